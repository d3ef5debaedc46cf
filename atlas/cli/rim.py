"""`atlas rim score`, `session`, `memory` and `bench`: the judge ensemble from the command line.

    atlas rim score --input trajectories.jsonl --output scored.jsonl [--config PATH] [--set key=value ...]
    atlas rim session --input sessions.jsonl --output judged.jsonl [--focus TEXT] [--memory PATH | --no-memory]
    atlas rim memory [--memory PATH] [--kind student|teacher] [--limit N] [--json | --entries]
    atlas rim bench --data reward-bench-2.parquet [--limit N] [--seed S] [--output report.json]

`score` reads one trajectory per line (`question`, `ground_truth`, `baseline_response`, `teaching`,
`taught_response`, optional `student_probe`, `baseline_accuracy`), writes each row back with `score`, `escalated`,
`error` and the judges' details, prints a summary last (`scored` rows were judged by the whole panel, `partial` ones
by only some of its judges, `failed` ones by none), and exits 1 unless every row was scored by the whole panel.

`session` reads one whole session per line (`task`, optional `plan`, `steps`, `final_answer`, `execution_mode`,
`teaching`, `ground_truth`, and an `id` copied to the output), judges each with the session evaluator and writes
one line per session: the documented session JSON (principles, score, rationale, uncertainty, student_learning,
teacher_learning) with its escalation info. Before judging it reads the recent learnings of the learning memory
(`atlas.rim.memory`, default `.atlas/rim_memory.sqlite`) into the judge's prompt; after writing the output it
appends the new learnings there. It exits 1 unless every session was judged. `memory` lists what the memory holds.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from atlas.core.errors import AtlasError, InputError

MEMORY_DEFAULT = ".atlas/rim_memory.sqlite"  # atlas.rim.memory.DEFAULT_MEMORY_PATH, named here without importing RIM
REQUIRED_FIELDS = ("question", "taught_response")
TEXT_FIELDS = ("question", "ground_truth", "baseline_response", "teaching", "taught_response", "student_probe")


def add_parser(subparsers: Any) -> None:
    rim = subparsers.add_parser("rim", help="RIM judge ensemble: score trajectories, run RewardBench 2")
    commands = rim.add_subparsers(dest="rim_command", required=True, metavar="{score,session,memory,bench}")

    score = commands.add_parser("score", help="score trajectories (one JSON object per line)")
    score.add_argument("--input", required=True, type=Path, help="JSONL trajectories")
    score.add_argument("--output", required=True, type=Path, help="JSONL with a score per row")
    _add_config_args(score)
    score.add_argument("--no-audit", action="store_true", help="leave the per-call audit out of the output rows")
    score.set_defaults(func=score_command)

    session = commands.add_parser("session", help="judge whole sessions; keep their learnings in the memory")
    session.add_argument("--input", required=True, type=Path, help="JSONL sessions (task, steps, final_answer, ...)")
    session.add_argument("--output", required=True, type=Path, help="JSONL with one session judgment per line")
    _add_config_args(session)
    session.add_argument("--focus", default=None, help="evaluation criteria (default: focus_prompt of the config)")
    _add_memory_arg(session)
    session.add_argument("--no-memory", action="store_true", help="neither read nor write the learning memory")
    session.add_argument(
        "--memory-context",
        type=_non_negative,
        default=5,
        metavar="N",
        help="recent learnings of each kind shown to the judge (default 5; 0: record only)",
    )
    session.add_argument("--no-audit", action="store_true", help="leave the per-call audit out of the output")
    session.set_defaults(func=session_command)

    memory = commands.add_parser("memory", help="list the learnings kept by `atlas rim session`")
    _add_memory_arg(memory)
    memory.add_argument("--kind", choices=("student", "teacher"), default=None, help="only this kind")
    memory.add_argument("--limit", type=_non_negative, default=20, help="at most N learnings (default 20; 0: all)")
    shape = memory.add_mutually_exclusive_group()
    shape.add_argument("--json", action="store_true", help="one JSON object per distinct learning")
    shape.add_argument("--entries", action="store_true", help="every recorded observation, as JSON lines")
    memory.set_defaults(func=memory_command)

    bench = commands.add_parser("bench", help="RewardBench 2 with the official protocol")
    bench.add_argument("--data", required=True, type=Path, help="RB2 data (.parquet or .jsonl)")
    bench.add_argument("--limit", type=int, default=None, help="only the first N items")
    bench.add_argument("--subset", action="append", default=[], help="only these subsets (repeatable)")
    bench.add_argument("--seed", type=int, default=0, help="seed of the candidate order")
    bench.add_argument("--judge", default="rb2_rating", help="judge that rates each candidate")
    bench.add_argument("--output", type=Path, default=None, help="write the full report (JSON) here")
    _add_config_args(bench)
    bench.set_defaults(func=bench_command)


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, help="RIM config (default: configs/rim_config.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a RIM config key")


def _add_memory_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory", type=Path, default=None, help=f"learning memory (default {MEMORY_DEFAULT})")


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _reward(args: argparse.Namespace):
    from atlas.rim.config import load_rim_config
    from atlas.rim.reward import RIMReward

    return RIMReward(load_rim_config(args.config, args.set))


def json_objects(path: Path, unit: str, problems: list[str]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """(number, "<file>: <unit> <number>", object) for each non-blank line of a JSON-lines file; a line that is not
    a UTF-8 JSON object is added to `problems` instead, naming the file and the line."""
    if not path.exists():
        raise InputError(f"{path}: input file not found")
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"{path}: {unit} {number}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                problems.append(f"{where}: not UTF-8 text")
                continue
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{where}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{where}: expected a JSON object")
                continue
            yield number, where, row


def read_trajectories(path: Path) -> list[dict[str, Any]]:
    rows, problems = [], []
    for number, where, row in json_objects(path, "row", problems):
        for name in REQUIRED_FIELDS:
            if not isinstance(row.get(name), str) or not row[name].strip():
                problems.append(f"{where}: field '{name}': missing or empty")
        for name in TEXT_FIELDS:
            if row.get(name) is not None and not isinstance(row[name], str):
                problems.append(f"{where}: field '{name}': must be a string")
        rows.append({"_line": number, **row})
    if problems:
        raise InputError("\n".join(problems))
    if not rows:
        raise InputError(f"{path}: no trajectories")
    return rows


def score_command(args: argparse.Namespace) -> int:
    from atlas.core.io import write_jsonl

    rows = read_trajectories(args.input)
    reward = _reward(args)
    try:
        results = reward.score_batch_sync([{k: v for k, v in r.items() if k != "_line"} for r in rows])
    finally:
        reward.close()
    out = []
    for row, result in zip(rows, results, strict=True):
        scored = {k: v for k, v in row.items() if k != "_line"}
        scored.update(row=row["_line"], **result.to_dict(include_calls=not args.no_audit))
        out.append(scored)
    write_jsonl(args.output, out)
    failed = [r for r in out if r["score"] is None]
    partial = [r for r in out if r["partial"]]
    for r in failed:
        print(f"row {r['row']}: not scored: {r['error']}", file=sys.stderr)
    for r in partial:
        print(f"row {r['row']}: {r['error']}", file=sys.stderr)
    m = reward.last_metrics
    print(
        f"rows={len(out)} scored={len(out) - len(failed) - len(partial)} partial={len(partial)} failed={len(failed)} "
        f"escalation_rate={m.get('escalation_rate', 0.0):.3f} calls={int(m.get('calls', 0))} "
        f"retries={int(m.get('retries', 0))} cache_hits={int(m.get('cache_hits', 0))} tokens={int(m.get('tokens', 0))} "
        f"cost_usd={m.get('cost_usd', 0.0):.6f} -> {args.output}"
    )
    return 1 if failed or partial else 0


def bench_command(args: argparse.Namespace) -> int:
    from atlas.core.io import write_json
    from atlas.rim.calls import run_sync
    from atlas.rim.rewardbench import load_rb2, run_rewardbench

    items = load_rb2(args.data)
    if args.subset:
        items = [i for i in items if i.subset in set(args.subset)]
    if args.limit is not None:
        items = items[: args.limit]
    if not items:
        raise InputError(f"{args.data}: no items left after --subset/--limit")
    reward = _reward(args)
    if reward.config.small_model.provider == "offline":
        from atlas.core.errors import ConfigError

        raise ConfigError(
            "atlas rim bench needs a model judge: the offline judge only checks answers against a ground truth, "
            "which RewardBench items do not have (use --config configs/rim_gemini.yaml or --set small_model=...)"
        )
    try:
        report = run_sync(lambda: run_rewardbench(reward, items, seed=args.seed, judge=args.judge))
    finally:
        reward.close()
    if args.output:
        write_json(args.output, report)
    for name, subset in report["subsets"].items():
        print(f"{name:<12} accuracy={subset['accuracy']:.4f} items={subset['items']}")
    usage = report["usage"]
    print(
        f"overall={report['overall']:.4f} items={report['items']} ratings={report['ratings']} "
        f"failed_ratings={report['failed_ratings']} escalation_rate={report['escalation_rate']:.3f} "
        f"calls={usage['calls']} cache_hits={usage['cache_hits']} tokens={usage['tokens']} "
        f"cost_usd={usage['cost_usd']:.6f}"
    )
    return 1 if report["failed_ratings"] == report["ratings"] else 0


# ------------------------------------------------------------------ sessions and the learning memory


def read_sessions(path: Path) -> list[tuple[int, Any, Any]]:
    """(line, id, SessionTrajectory) per non-blank line; every bad line is reported (file, line, field) at once."""
    from atlas.rim.session import parse_trajectory

    sessions, problems = [], []
    for number, where, row in json_objects(path, "line", problems):
        ident = row.pop("id", None)
        if ident is not None and (isinstance(ident, bool) or not isinstance(ident, str | int)):
            problems.append(f"{where}: field 'id': must be a string or an integer")
        try:
            sessions.append((number, ident, parse_trajectory(row, origin=where)))
        except InputError as exc:
            problems.extend(str(exc).splitlines())
    if problems:
        raise InputError("\n".join(problems))
    if not sessions:
        raise InputError(f"{path}: no sessions")
    return sessions


def session_command(args: argparse.Namespace) -> int:
    from atlas.core.io import write_jsonl
    from atlas.rim.memory import LearningMemory, judge_identity, learnings_of, now_utc
    from atlas.rim.session import relevant_learnings, session_payload

    sessions = read_sessions(args.input)
    reward = _reward(args)
    memory = None if args.no_memory else LearningMemory(args.memory)  # a damaged memory stops us before any call
    try:
        context = memory.context(args.memory_context) if memory is not None else []
        try:
            results = reward.evaluate_sessions([t for _, _, t in sessions], args.focus, context)
        finally:
            reward.close()
        cfg = reward.config
        focus = args.focus if args.focus is not None else cfg.effective_focus()
        (judge, fingerprint), judged_at = judge_identity(cfg, focus), now_utc()
        out, learned = [], []
        for (number, ident, trajectory), result in zip(sessions, results, strict=True):
            payload = session_payload(result, include_calls=not args.no_audit)
            row = {"line": number, **({"id": ident} if ident is not None else {}), "task": trajectory.task}
            row.update(payload, learnings_in_prompt=len(relevant_learnings(trajectory, context)))
            out.append(row)
            learned += learnings_of(
                payload, trajectory.task, judge=judge, config_sha256=fingerprint,
                source=f"{args.input}:{number}", judged_at=judged_at,
            )  # fmt: skip
        write_jsonl(args.output, out)
        try:
            added, known = memory.append(learned) if memory is not None else (0, 0)
        except AtlasError as exc:
            raise AtlasError(f"{exc} (the judgments are in {args.output})") from None
    finally:
        if memory is not None:
            memory.close()
    failed = [r for r in out if r["score"] is None]
    for r in failed:
        print(f"line {r['line']}: not judged: {r['error']}", file=sys.stderr)
    m = reward.last_metrics
    where = "off" if memory is None else str(memory.path)
    print(
        f"sessions={len(out)} judged={len(out) - len(failed)} failed={len(failed)} "
        f"escalation_rate={m.get('escalation_rate', 0.0):.3f} learnings_in_prompt={len(context)} "
        f"learnings_added={added} learnings_known={known} memory={where} calls={int(m.get('calls', 0))} "
        f"retries={int(m.get('retries', 0))} cache_hits={int(m.get('cache_hits', 0))} tokens={int(m.get('tokens', 0))} "
        f"cost_usd={m.get('cost_usd', 0.0):.6f} -> {args.output}"
    )
    return 1 if failed else 0


def memory_command(args: argparse.Namespace) -> int:
    from atlas.rim.memory import KINDS, LearningMemory

    kinds = (args.kind,) if args.kind else KINDS
    with LearningMemory(args.memory, create=False) as memory:
        if args.entries:
            entries = memory.entries(kinds)
            for entry in entries[-args.limit :] if args.limit else entries:
                print(json.dumps(entry.to_dict(), ensure_ascii=False))
            return 0
        groups = memory.recent(kinds, limit=args.limit or len(memory))
        total = len(memory)
    for group in groups:
        if args.json:
            print(json.dumps(group, ensure_ascii=False))
            continue
        score = "-" if group["last_score"] is None else f"{group['last_score']:.2f}"
        print(
            f"{group['kind']:<7}  sessions={group['sessions']:<3}  last={group['last_seen']}  score={score}  "
            f"{group['learning']}"
        )
    if not args.json:
        print(f"{len(groups)} learnings shown ({total} observations) from {memory.path}")
    return 0
