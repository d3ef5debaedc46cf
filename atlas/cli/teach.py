"""`atlas teach`: use a trained teacher on your own problems (`atlas.ops.teach`).

    atlas teach "A farmer has 52 trees in 4 equal rows. How many trees are in each row?" [--probe TEXT]
    atlas teach --input problems.jsonl --output taught.jsonl [--model-uri models:/atlas-teacher/3]

The teacher is the registry's champion unless `--model-uri` names another; the student is the pipeline's own
(`models.student_endpoint` when it is set, else `data/models/student`) unless `--student` / `--student-url` say
otherwise (`--student none`: guidance only). Prints the probe, the guidance and both answers; `--output` gets one
JSON object per input line (its own fields plus the model's outputs), written atomically.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from atlas.cli.args import add_config_args, load_config_from
from atlas.core import paths
from atlas.core.errors import AtlasError

log = logging.getLogger(__name__)


def add_parser(subparsers: Any) -> None:
    help_text = "guidance and the student's answers from a registered teacher (the champion by default)"
    p = subparsers.add_parser("teach", help=help_text, description=help_text)
    p.add_argument("problem", nargs="?", help="one problem (or use --input)")
    p.add_argument("--probe", default=None, help="the student's approach or attempt (default: the student's own)")
    p.add_argument("--input", type=Path, default=None, help="JSONL: one object with `problem` per line")
    p.add_argument("--output", type=Path, default=None, help="JSONL written with the outputs (with --input)")
    p.add_argument("--model-uri", default=None, help="default: models:/<tracking.registered_model>@champion")
    p.add_argument("--student", default=None, help="a local student folder, or `none` for guidance only")
    p.add_argument("--student-url", default=None, help="an OpenAI-compatible server's base URL (e.g. vLLM)")
    p.add_argument("--student-model", default="student", help="the served model's name (with --student-url)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of text")
    add_config_args(p)
    p.set_defaults(func=run)


def pipeline_student(cfg) -> str | dict | None:
    """The pipeline's own student: its endpoint when configured, else the materialized folder (if there is one)."""
    endpoint = cfg.models.student_endpoint
    folder = paths.MODELS_DIR / "student"
    if endpoint.base_url:
        spec = {"base_url": endpoint.base_url, "model": endpoint.model, "api_key_env": endpoint.api_key_env}
        return {**spec, "tokenizer": str(folder.resolve()) if folder.is_dir() else None}
    if folder.is_dir():
        return str(folder)
    log.info("no student here (%s is missing; run `atlas models`): guidance only", folder)
    return "none"


def run(args) -> int:
    from atlas.core.io import write_jsonl
    from atlas.ops.teach import champion_uri, load, read_problems, teach

    if (args.problem is None) == (args.input is None):
        raise AtlasError("give one problem as an argument, or --input FILE (not both)")
    if args.output is not None and args.input is None:
        raise AtlasError("--output needs --input")
    if args.probe is not None and args.input is not None:
        raise AtlasError("--probe goes with one problem; in --input give each line its own `probe`")
    cfg = load_config_from(args)
    if args.student_url:
        student: Any = {"base_url": args.student_url, "model": args.student_model}
    else:
        student = args.student or pipeline_student(cfg)
    rows = read_problems(args.input) if args.input else [{"problem": args.problem, "probe": args.probe}]
    model = load(args.model_uri or champion_uri(cfg.tracking.registered_model), student)
    outputs = teach(rows, model=model)
    merged = [{**row, **out} for row, out in zip(rows, outputs, strict=True)]
    if args.output is not None:
        write_jsonl(args.output, merged)
        log.info("wrote %d rows to %s", len(merged), args.output)
    for row in merged:
        print(json.dumps(row, ensure_ascii=False) if args.json else format_row(row))
    return 0


def format_row(row: dict) -> str:
    """The text `atlas teach` prints for one row: each field on one line."""
    guidance = _line(row["guidance"]) or "(silent: the teacher leaves the student alone)"
    lines = [
        f"problem:        {_line(row['problem'])}",
        f"probe:          {_line(row['probe']) or '(none)'}",
        f"guidance:       {guidance}",
    ]
    if row.get("student_answer") is not None:
        lines.append(f"student alone:  {_answer(row, 'student')}")
        lines.append(f"with guidance:  {_answer(row, 'taught')}")
    return "\n".join(lines) + "\n"


def _answer(row: dict, which: str) -> str:
    text = _line(row[f"{which}_answer"])
    verdict = row.get(f"{which}_correct")
    mark = "" if verdict is None else (" [correct]" if verdict else " [wrong]")
    return f"{text}  -> {row[f'{which}_final']}{mark}"


def _line(text: str | None) -> str:
    return " ".join(str(text or "").split())
