"""RewardBench 2 with the official protocol, run through the RIM ensemble (judge `rb2_rating` by default).

Data: a .jsonl or .parquet file in the RB2 schema (`id`, `prompt`, `chosen` list, `rejected` list, `subset`, ...),
given by path (the hub is not needed). Protocol (allenai/reward-bench `rewardbench/utils.py`):
- every candidate is rated on its own, through the full two-tier ensemble; the order in which an item's
  candidates are submitted is shuffled with a seed derived from (`seed`, item id) and recorded;
- best-of-n subsets: an item earns 1/k when a chosen response shares the top rating with k candidates, else 0
  (with several chosen responses: chosen-at-top / all-at-top);
- Ties (ids `ref:<n>` / `tied:<n>`, the first len(chosen) candidates correct): 0.30 tied accuracy + 0.30 ref
  accuracy + 0.20 correctness_preferred + 0.20 correctness_preferred_hard + 0.01 margin score;
- the overall score is the unweighted mean over subsets.
A rating that failed (None) counts against the judge: a correct candidate becomes -1, an incorrect one 2.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.core.errors import InputError
from atlas.rim.ensemble import run_judge
from atlas.rim.judges import get_judge
from atlas.rim.reward import RIMReward

TIES = "Ties"
FAILED_CORRECT, FAILED_INCORRECT = -1.0, 2.0


@dataclass(frozen=True)
class RB2Item:
    id: str
    prompt: str
    chosen: tuple[str, ...]
    rejected: tuple[str, ...]
    subset: str

    @property
    def candidates(self) -> tuple[str, ...]:
        return self.chosen + self.rejected


def _read_rows(path: Path) -> list[Any]:
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    rows = []
    with open(path, encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise InputError(f"{path}: row {number}: not valid JSON ({exc.msg})") from None
            else:
                rows.append(None)
    return rows


def _text_list(value: Any) -> bool:
    return isinstance(value, list | tuple) and len(value) > 0 and all(isinstance(v, str) for v in value)


def load_rb2(path: Path | str) -> list[RB2Item]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: RewardBench 2 data file not found")
    if path.suffix not in (".jsonl", ".parquet"):
        raise InputError(f"{path}: expected a .jsonl or .parquet file in the RewardBench 2 schema")
    items, problems = [], []
    for number, row in enumerate(_read_rows(path), start=1):
        if row is None:
            continue
        where = f"{path}: row {number}"
        if not isinstance(row, dict):
            problems.append(f"{where}: expected an object")
            continue
        row_problems = []
        if not isinstance(row.get("prompt"), str) or not row["prompt"].strip():
            row_problems.append(f"{where}: field 'prompt': must be a non-empty string")
        for name in ("chosen", "rejected"):
            if not _text_list(row.get(name)):
                row_problems.append(f"{where}: field '{name}': must be a non-empty list of strings")
        if not isinstance(row.get("subset"), str) or not row["subset"]:
            row_problems.append(f"{where}: field 'subset': must be a non-empty string")
        if row.get("id") is None:
            row_problems.append(f"{where}: field 'id': missing")
        elif row.get("subset") == TIES and str(row["id"]).split(":")[0] not in ("ref", "tied"):
            row_problems.append(f"{where}: field 'id': Ties ids look like 'ref:<n>' or 'tied:<n>' (got {row['id']!r})")
        if row_problems:
            problems.extend(row_problems)
            continue
        items.append(
            RB2Item(str(row["id"]), row["prompt"], tuple(row["chosen"]), tuple(row["rejected"]), row["subset"])
        )
    if problems:
        raise InputError("\n".join(problems))
    if not items:
        raise InputError(f"{path}: no RewardBench 2 items")
    return items


def best_of_n_credit(scores: Sequence[float | None], num_chosen: int) -> float:
    values = [
        (FAILED_CORRECT if i < num_chosen else FAILED_INCORRECT) if s is None else s for i, s in enumerate(scores)
    ]
    top = max(values)
    at_top = [i for i, v in enumerate(values) if v == top]
    return sum(1 for i in at_top if i < num_chosen) / len(at_top)


def _stats(scores: Sequence[float | None], num_correct: int) -> dict[str, Any]:
    values = [
        (FAILED_CORRECT if i < num_correct else FAILED_INCORRECT) if s is None else s for i, s in enumerate(scores)
    ]
    correct, incorrect = values[:num_correct], values[num_correct:]
    if not correct or not incorrect:
        return {"accurate": False, "diff_correct": None, "correct_incorrect": 0.0}
    worst_correct, best_incorrect = min(correct), max(incorrect)
    return {
        "accurate": worst_correct > best_incorrect,
        "diff_correct": max(correct) - worst_correct if len(correct) > 1 else None,
        "correct_incorrect": worst_correct - best_incorrect,
    }


def ties_score(entries: Sequence[tuple[str, Sequence[float | None], int]]) -> dict[str, float]:
    """Official Ties metric from (id `ref:<n>`/`tied:<n>`, candidate scores, number of correct candidates)."""
    stats: dict[str, dict[str, dict[str, Any]]] = {"ref": {}, "tied": {}}
    for item_id, scores, num_correct in entries:
        kind, _, prompt_id = item_id.partition(":")
        stats[kind][prompt_id] = _stats(scores, num_correct)
    ref, tied = stats["ref"], stats["tied"]
    ref_acc = statistics.fmean(s["accurate"] for s in ref.values()) if ref else 0.0
    tied_acc = statistics.fmean(s["accurate"] for s in tied.values()) if tied else 0.0
    common = [p for p in tied if p in ref and tied[p]["diff_correct"] is not None]
    preferred = [tied[p]["correct_incorrect"] > tied[p]["diff_correct"] for p in common]
    hard = [min(ref[p]["correct_incorrect"], tied[p]["correct_incorrect"]) > tied[p]["diff_correct"] for p in common]
    ratios = [
        min(ref[p]["correct_incorrect"], tied[p]["correct_incorrect"]) / tied[p]["diff_correct"]
        for p in common
        if tied[p]["diff_correct"] > 0
    ]
    out = {
        "ref_accuracy": float(ref_acc),
        "tied_accuracy": float(tied_acc),
        "correctness_preferred": float(statistics.fmean(preferred)) if preferred else 0.0,
        "correctness_preferred_hard": float(statistics.fmean(hard)) if hard else 0.0,
        "correctness_margin_score": float(statistics.fmean(math.tanh(r - 1) for r in ratios)) if ratios else 0.0,
    }
    out["score"] = (
        0.3 * out["tied_accuracy"]
        + 0.3 * out["ref_accuracy"]
        + 0.2 * out["correctness_preferred"]
        + 0.2 * out["correctness_preferred_hard"]
        + 0.01 * out["correctness_margin_score"]
    )
    return out


async def _rate_items(reward: RIMReward, items: Sequence[RB2Item], seed: int, judge: str) -> list[dict[str, Any]]:
    spec = get_judge(judge, reward.config)
    async with reward.runtime() as runtime:
        plans, jobs = [], []
        for item in items:
            order = list(range(len(item.candidates)))
            random.Random(f"{seed}:{item.id}").shuffle(order)
            plans.append(order)
            jobs.extend(
                run_judge(spec, {"question": item.prompt, "response": item.candidates[i]}, runtime) for i in order
            )
        results = await asyncio.gather(*jobs)
    reward.last_usage = runtime.usage
    rated, offset = [], 0
    for item, order in zip(items, plans, strict=True):
        by_position = dict(zip(order, results[offset : offset + len(order)], strict=True))
        offset += len(order)
        judged = [by_position[i] for i in range(len(order))]
        rated.append(
            {
                "id": item.id,
                "subset": item.subset,
                "num_chosen": len(item.chosen),
                "order": order,
                "scores": [j.score for j in judged],
                "escalated": sum(j.escalated for j in judged),
                "failed": [i for i, j in enumerate(judged) if j.score is None],
                "errors": sorted({j.error for j in judged if j.error}),
            }
        )
    return rated


def summarise(rated: Sequence[dict[str, Any]]) -> dict[str, Any]:
    by_subset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rated:
        by_subset[row["subset"]].append(row)
    subsets: dict[str, dict[str, Any]] = {}
    for name, rows in sorted(by_subset.items()):
        if name == TIES:
            detail = ties_score([(r["id"], r["scores"], r["num_chosen"]) for r in rows])
            accuracy = detail.pop("score")
        else:
            for r in rows:
                r["credit"] = best_of_n_credit(r["scores"], r["num_chosen"])
            accuracy, detail = statistics.fmean(r["credit"] for r in rows), {}
        subsets[name] = {"accuracy": float(accuracy), "items": len(rows), **detail}
    ratings = sum(len(r["scores"]) for r in rated)
    return {
        "overall": float(statistics.fmean(s["accuracy"] for s in subsets.values())) if subsets else 0.0,
        "subsets": subsets,
        "items": len(rated),
        "ratings": ratings,
        "failed_ratings": sum(len(r["failed"]) for r in rated),
        "escalation_rate": sum(r["escalated"] for r in rated) / ratings if ratings else 0.0,
    }


async def run_rewardbench(
    reward: RIMReward, items: Sequence[RB2Item], seed: int = 0, judge: str = "rb2_rating"
) -> dict[str, Any]:
    rated = await _rate_items(reward, items, seed, judge)
    report = summarise(rated)
    usage = reward.last_usage
    report.update(seed=seed, judge=judge, usage=usage.to_dict(), per_item=list(rated))
    return report
