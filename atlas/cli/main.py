"""`atlas <command>`: run a pipeline stage, the whole pipeline, or an operation around it.

One pipeline stage from params.yaml (what dvc.yaml calls), the whole pipeline (`atlas run`), the operations around it
(gate, register, rollback, results), the `rim` and `doctor` command groups, and `teach` (use a trained teacher).

Every command takes `--params FILE` (default params.yaml), `--preset NAME` and repeatable `--set key.path=value`.
A configuration or input problem prints one clear `error:` line per problem and exits 2; a failed gate exits 1.
"""

from __future__ import annotations

import argparse
import difflib
import importlib.metadata
import inspect
import logging
import re
import sys

from atlas.cli import doctor, rim, teach
from atlas.cli.args import add_config_args, load_config_from
from atlas.core import paths
from atlas.core.errors import AtlasError, GateFailed
from atlas.ops import launcher
from atlas.ops.runner import MODULES
from atlas.stages import STAGES

log = logging.getLogger("atlas")

OPERATIONS = {
    "gate": "check the candidate teacher against thresholds and the champion",
    "register": "register the checkpoint in MLflow; move `champion` if the gate passed",
    "rollback": "move the `champion` alias back to `previous`",
    "run": "the whole pipeline: dvc repro, gate, register (the main job)",
    "results": "the results table of a pipeline run, read back from MLflow",
    "params": "write the complete params.yaml of a preset (what DVC reads)",
}


def _stage(args) -> int:
    from atlas.core import process
    from atlas.ops.runner import run_stage

    process.watch_driver()  # under a pipeline driver: stop (with any workers) if the driver dies
    if args.command in ("sft", "grpo"):
        code = launcher.maybe_launch(args, args.command)
        if code is not None:
            return code
    if args.command == "config" and args.show:
        print(show_config(load_config_from(args)), end="")
        return 0
    options = {"out_dir": args.out} if args.command == "config" else {}
    if args.command == "ingest":
        options["source"] = args.source
    if args.command == "evaluate":
        options["split"] = args.split
    summary = run_stage(load_config_from(args), args.command, **options)
    if args.command == "config":
        print(f"preset '{summary['preset']}' resolved into {summary['out_dir']}/")
    return 0


def _gate(args) -> int:
    from atlas.ops.gate import gate

    gate(load_config_from(args))
    return 0


def _register(args) -> int:
    from atlas.ops.registry import register

    register(load_config_from(args), flow_run_id=args.flow_run_id)
    return 0


def _rollback(args) -> int:
    from atlas.ops.registry import rollback_champion

    rollback_champion(load_config_from(args))
    return 0


def _results(args) -> int:
    from atlas.ops.results import results_markdown

    print(results_markdown(load_config_from(args), args.run_id))
    return 0


def _run_pipeline(args) -> int:
    """The main job: `dvc repro` (every stage, nested MLflow runs under one parent), then gate and register.
    `--preset` / `--set` make the run a DVC experiment (params.yaml is left as it is)."""
    from atlas.ops import pipeline

    result = pipeline.run(args.preset, args.set, params_path=args.params)
    if not result.gate_passed:
        print(f"\n{result.gate_text}", file=sys.stderr)
    summary = result.root / paths.EVAL_SUMMARY
    if summary.exists():
        print("\n" + summary.read_text(encoding="utf-8"))
    if result.experiment:
        print(f"DVC experiment: {result.experiment} (`dvc exp show`; `dvc exp apply {result.experiment}` to adopt it)")
    print(f"MLflow run: {result.run_id} (experiment '{result.cfg.tracking.experiment}')")
    print("Open the MLflow UI with `make ui`, then http://127.0.0.1:5000")
    if not result.gate_passed:
        print("The gate did not pass: nothing was registered, `champion` did not move.", file=sys.stderr)
    elif result.registered:
        reg = result.registered
        where = f"v{reg['version']}" if reg.get("version") else "nothing"
        champion = "; champion" if reg.get("champion") else ""
        print(f"Registry: {reg['outcome']} ({where}){champion}. {reg.get('reason', '')}".rstrip())
    return 1 if (args.fail_on_gate and not result.gate_passed) else 0


def _params(args) -> int:
    """`atlas params`: the complete params.yaml of a preset (what DVC sees), replacing the file atomically."""
    from pathlib import Path

    from atlas.config import differences, load_config, params_yaml
    from atlas.core.io import atomic_write_text

    name = args.preset or load_config(args.params).preset
    cfg = load_config(None, overrides=args.set, preset=name)
    out = Path(args.out or args.params)
    if out.exists():
        try:
            old = load_config(out)
        except AtlasError as exc:  # e.g. written by an older version whose keys are gone: replaced, said so
            print(f"{out}: replacing a file that no longer loads ({exc})")
        else:
            for key, before, after in differences(old, cfg):
                print(f"{out}: {key}: {before!r} -> {after!r}")
    atomic_write_text(out, params_yaml(cfg))
    print(f"{out} now holds preset '{cfg.preset}', complete")
    return 0


def _add_stage(sub, name: str) -> None:
    help_text = (MODULES[name].__doc__ or name).splitlines()[0].removeprefix(f"Stage `{name}`: ").rstrip(".")
    p = sub.add_parser(name, help=help_text, description=help_text)
    add_config_args(p)
    p.set_defaults(func=_stage)
    if name == "config":
        p.add_argument("--out", default=str(paths.CONFIG_DIR), help="directory for the section files")
        p.add_argument("--show", action="store_true", help="print the resolved configuration (YAML), write nothing")
    if name == "ingest":
        p.add_argument("--source", default=None, help="synthetic | local dir | .jsonl/.parquet file | hub id")
    if name == "evaluate":
        p.add_argument(
            "--split",
            choices=("eval", "dev"),
            default="eval",
            help="eval: the held-out split (the pipeline's evaluation); dev: the split carved from train for design"
            " and tuning decisions, reported under reports/dev/ (outside the DVC outputs)",
        )
    if name in ("sft", "grpo"):
        launcher.add_launcher_args(p)


def show_config(cfg) -> str:
    """The resolved configuration (preset <- params.yaml <- --set) as YAML, every key with its value."""
    import yaml

    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)


class Parser(argparse.ArgumentParser):
    """argparse, with "did you mean ...?" on a mistyped command: the interpreter's own `suggest_on_error` where it
    has one (Python 3.14+), else the nearest choice by difflib."""

    def __init__(self, *args, **kwargs):
        if "suggest_on_error" in inspect.signature(argparse.ArgumentParser.__init__).parameters:
            kwargs.setdefault("suggest_on_error", True)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        match = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if match and "did you mean" not in message:
            choices = re.findall(r"'([^']*)'|([\w-]+)", match.group(2))
            names = [a or b for a, b in choices]
            nearest = difflib.get_close_matches(match.group(1), names, n=1, cutoff=0.6)
            if nearest:
                message = f"{message}; did you mean '{nearest[0]}'?"
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="atlas", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"atlas {importlib.metadata.version('atlas-pipeline')}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in STAGES:
        _add_stage(sub, name)
    handlers = {
        "gate": _gate,
        "register": _register,
        "rollback": _rollback,
        "run": _run_pipeline,
        "results": _results,
        "params": _params,
    }
    for name, help_text in OPERATIONS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_config_args(p)
        p.set_defaults(func=handlers[name])
        if name == "run":
            p.add_argument("--fail-on-gate", action="store_true", help="exit 1 when the gate does not pass")
        if name == "params":
            p.add_argument("--out", default=None, help="where to write (default: the --params file, params.yaml)")
        if name == "results":
            p.add_argument("--run-id", default=None, help="pipeline (parent) run id; default: the latest finished one")
        if name == "register":
            p.add_argument("--flow-run-id", default=None, help="Prefect flow run id to tag the version with")
    rim.add_parser(sub)
    doctor.add_parser(sub)
    teach.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "alembic", "mlflow", "filelock", "huggingface_hub", "great_expectations"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except GateFailed as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except AtlasError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
