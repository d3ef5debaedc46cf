"""`atlas rim score` and `atlas rim bench`: the judge ensemble from the command line.

    atlas rim score --input trajectories.jsonl --output scored.jsonl [--config PATH] [--set key=value ...]
    atlas rim bench --data reward-bench-2.parquet [--limit N] [--seed S] [--output report.json]

`score` reads one trajectory per line (`question`, `ground_truth`, `baseline_response`, `teaching`,
`taught_response`, optional `student_probe`, `baseline_accuracy`), writes each row back with `score`, `escalated`,
`error` and the judges' details, prints a summary last (`scored` rows were judged by the whole panel, `partial` ones
by only some of its judges, `failed` ones by none), and exits 1 unless every row was scored by the whole panel.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from atlas.core.errors import InputError

REQUIRED_FIELDS = ("question", "taught_response")
TEXT_FIELDS = ("question", "ground_truth", "baseline_response", "teaching", "taught_response", "student_probe")


def add_parser(subparsers: Any) -> None:
    rim = subparsers.add_parser("rim", help="RIM judge ensemble: score trajectories, run RewardBench 2")
    commands = rim.add_subparsers(dest="rim_command", required=True, metavar="{score,bench}")

    score = commands.add_parser("score", help="score trajectories (one JSON object per line)")
    score.add_argument("--input", required=True, type=Path, help="JSONL trajectories")
    score.add_argument("--output", required=True, type=Path, help="JSONL with a score per row")
    _add_config_args(score)
    score.add_argument("--no-audit", action="store_true", help="leave the per-call audit out of the output rows")
    score.set_defaults(func=score_command)

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


def _reward(args: argparse.Namespace):
    from atlas.rim.config import load_rim_config
    from atlas.rim.reward import RIMReward

    return RIMReward(load_rim_config(args.config, args.set))


def read_trajectories(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise InputError(f"{path}: input file not found")
    rows, problems = [], []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.append(f"{path}: row {number}: not valid JSON ({exc.msg})")
                continue
            if not isinstance(row, dict):
                problems.append(f"{path}: row {number}: expected a JSON object")
                continue
            for name in REQUIRED_FIELDS:
                if not isinstance(row.get(name), str) or not row[name].strip():
                    problems.append(f"{path}: row {number}: field '{name}': missing or empty")
            for name in TEXT_FIELDS:
                if row.get(name) is not None and not isinstance(row[name], str):
                    problems.append(f"{path}: row {number}: field '{name}': must be a string")
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
