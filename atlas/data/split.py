"""Train/dev/eval assignment by a stable hash of the normalized problem text.

A problem's split depends only on (its normalized text, `data.split_salt`, `data.eval_fraction`,
`data.dev_fraction`): adding or removing other rows never moves it. `eval` is the held-out split, read only by the
final evaluation; `dev` is carved from what is not held out (a second, independent hash), for design and tuning
decisions (`atlas evaluate --split dev`); the teacher trains on `train`. Eval rows that are near-exact duplicates of a
train or dev row (same letters and digits, ignoring case, spacing and punctuation) are dropped from eval, so nothing
the teacher trained or was tuned on is evaluated.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from atlas.data.schema import loose_problem_key, problem_key


def split_score(problem: str, salt: str) -> float:
    """A uniform number in [0, 1) fixed by the normalized problem text and the salt."""
    digest = hashlib.sha256(f"{salt}\x00{problem_key(problem)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(problem: str, salt: str, eval_fraction: float, dev_fraction: float = 0.0) -> str:
    """ "eval", "dev" or "train". The eval decision ignores `dev_fraction`, so carving a dev split never moves a
    problem into or out of the held-out split."""
    if split_score(problem, salt) < eval_fraction:
        return "eval"
    return "dev" if split_score(problem, f"{salt}:dev") < dev_fraction else "train"


@dataclass
class SplitResult:
    train: list[dict[str, Any]] = field(default_factory=list)
    dev: list[dict[str, Any]] = field(default_factory=list)
    eval: list[dict[str, Any]] = field(default_factory=list)
    contaminated: list[dict[str, Any]] = field(default_factory=list)  # eval rows dropped: {"id", "train_id"}


def assign_splits(
    records: list[dict[str, Any]], salt: str, eval_fraction: float, dev_fraction: float = 0.0
) -> SplitResult:
    """Copies of the records with `split` set; eval rows that duplicate a train or dev problem are left out."""
    result = SplitResult()
    for record in records:
        split = split_of(record["problem"], salt, eval_fraction, dev_fraction)
        getattr(result, split).append({**record, "split": split})
    train_keys = {loose_problem_key(r["problem"]): r["id"] for r in result.dev + result.train}
    kept = []
    for record in result.eval:
        twin = train_keys.get(loose_problem_key(record["problem"]))
        if twin is None:
            kept.append(record)
        else:
            result.contaminated.append({"id": record["id"], "train_id": twin})
    result.eval = kept
    return result


def take_by_hash(records: list[dict[str, Any]], limit: int | None, salt: str) -> list[dict[str, Any]]:
    """At most `limit` records, chosen by hash order (deterministic, independent of input order), sorted by id."""
    chosen = records
    if limit is not None and len(records) > limit:
        chosen = sorted(records, key=lambda r: (split_score(r["problem"], salt), r["id"]))[:limit]
    return sorted(chosen, key=lambda r: r["id"])
