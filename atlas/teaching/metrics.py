"""Evaluation metrics of a teacher, computed from per-problem outcome rows (definitions: docs/metrics.md).

An outcome row records, for one teacher and one held-out problem, the correctness / completion / token count of the
student's `k` baseline samples (alone) and `k` taught samples (with the teacher's guidance), the teaching length,
whether the guidance leaked the answer, and optionally the student's log-probability of the gold answer without and
with guidance. Everything here is pure (numpy, and scipy for the bootstrap, imported when first needed): the evaluation
stage produces the rows, this module turns them into numbers, and the numbers are JSON-serializable and NaN-free
(`None` where a metric is undefined).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from atlas.core.errors import InputError

Row = Mapping[str, Any]

BOOL_LIST_FIELDS = ("baseline_correct", "taught_correct", "baseline_completed", "taught_completed")
INT_LIST_FIELDS = ("baseline_tokens", "taught_tokens")
OPTIONAL_FLOAT_FIELDS = ("baseline_logp", "taught_logp")
# The keys of `teacher_metrics`, in the order reports show them.
METRIC_KEYS = (
    "baseline_accuracy",
    "taught_accuracy",
    "accuracy_delta",
    "accuracy_delta_ci_low",
    "accuracy_delta_ci_high",
    "non_degradation_rate",
    "non_degradation_rate_problem",
    "improvement_rate",
    "degradation_rate",
    "completion_rate_baseline",
    "completion_rate_taught",
    "response_tokens_baseline",
    "response_tokens_taught",
    "token_reduction",
    "teaching_tokens",
    "leak_rate",
    "logp_gold_baseline",
    "logp_gold_taught",
    "logp_gold_delta",
    "n_problems",
    "n_pairs",
    "k",
)
CI_LEVEL = 0.95
# The bootstrap resamples in batches of at most this many values (resamples x sample size), so memory stays bounded.
_BOOTSTRAP_BLOCK = 4_000_000


def validate_outcome(row: Any, where: str) -> None:
    """Raise InputError naming `where` (e.g. 'reports/eval_outcomes.jsonl row 3') and the field for a bad row."""
    if not isinstance(row, Mapping):
        raise InputError(f"{where}: expected an object, got {type(row).__name__}")
    for field in ("teacher", "id", "kind"):
        if not isinstance(row.get(field), str) or not row[field]:
            raise InputError(f"{where}: field '{field}' must be a non-empty string (got {row.get(field)!r})")
    for field in BOOL_LIST_FIELDS:
        value = row.get(field)
        if not isinstance(value, list) or not all(isinstance(v, bool) for v in value):
            raise InputError(f"{where}: field '{field}' must be a list of booleans (got {value!r})")
    for field in INT_LIST_FIELDS:
        value = row.get(field)
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        if not ok:
            raise InputError(f"{where}: field '{field}' must be a list of non-negative integers (got {value!r})")
    for side in ("baseline", "taught"):
        n = len(row[f"{side}_correct"])
        if n == 0:
            raise InputError(f"{where}: field '{side}_correct' is empty (need at least one sample)")
        for field in (f"{side}_completed", f"{side}_tokens"):
            if len(row[field]) != n:
                raise InputError(f"{where}: field '{field}' has {len(row[field])} entries, '{side}_correct' has {n}")
    tokens = row.get("teaching_tokens")
    if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
        raise InputError(f"{where}: field 'teaching_tokens' must be a non-negative integer (got {tokens!r})")
    if not isinstance(row.get("leaked"), bool):
        raise InputError(f"{where}: field 'leaked' must be a boolean (got {row.get('leaked')!r})")
    for field in OPTIONAL_FLOAT_FIELDS:
        value = row.get(field)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InputError(f"{where}: field '{field}' must be a finite number or null (got {value!r})")


def read_outcomes(path: Path | str) -> list[dict[str, Any]]:
    """Read and validate an outcomes jsonl file (one row per teacher x problem); blank lines are skipped."""
    path = Path(path)
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path} row {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{where}: not valid JSON ({exc.msg})") from None
            validate_outcome(row, where)
            key = (row["teacher"], row["id"])
            if key in seen:
                raise InputError(f"{where}: field 'id': duplicate problem '{row['id']}' for teacher '{row['teacher']}'")
            seen.add(key)
            rows.append(row)
    return rows


def group_by_teacher(rows: Iterable[Row]) -> dict[str, list[Row]]:
    """Rows grouped by their 'teacher' field, teachers in first-seen order."""
    groups: dict[str, list[Row]] = {}
    for row in rows:
        groups.setdefault(row["teacher"], []).append(row)
    return groups


def _check_rows(rows: Sequence[Row]) -> None:
    if not rows:
        raise ValueError("no outcome rows to compute metrics from")
    ids: set[str] = set()
    for number, row in enumerate(rows, start=1):
        validate_outcome(row, f"outcome row {number}")
        if row["id"] in ids:
            raise InputError(f"outcome row {number}: field 'id': duplicate problem '{row['id']}'")
        ids.add(row["id"])


def bootstrap_mean_ci(
    values: Sequence[float] | np.ndarray, *, samples: int = 1000, seed: int = 0, level: float = CI_LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (`scipy.stats.bootstrap`, `method="percentile"`): `samples`
    resamples with replacement drawn from a generator seeded with `seed`; the (1-level)/2 and (1+level)/2
    percentiles of their means. One value is its own interval (every resample of it is the same)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("bootstrap of an empty sample")
    if samples < 1:
        raise ValueError(f"bootstrap samples must be >= 1, got {samples}")
    if data.size == 1:
        return float(data[0]), float(data[0])
    from scipy.stats import bootstrap

    result = bootstrap(
        (data,),
        np.mean,
        n_resamples=samples,
        batch=max(1, _BOOTSTRAP_BLOCK // data.size),
        confidence_level=level,
        method="percentile",
        rng=np.random.default_rng(seed),
        vectorized=True,
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _pair_counts(row: Row) -> tuple[int, int, int]:
    """(pairs, degraded, improved) over the row's (baseline, taught) sample pairs, up to the shorter list."""
    m = min(len(row["baseline_correct"]), len(row["taught_correct"]))
    pairs = list(zip(row["baseline_correct"][:m], row["taught_correct"][:m], strict=True))
    return m, sum(1 for b, t in pairs if b and not t), sum(1 for b, t in pairs if t and not b)


def _mean_or_none(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def teacher_metrics(rows: Sequence[Row], *, bootstrap_samples: int = 1000, seed: int = 0) -> dict[str, Any]:
    """All metrics of one teacher over its outcome rows (one row per problem). See docs/metrics.md."""
    _check_rows(rows)
    base_acc = np.array([np.mean(r["baseline_correct"]) for r in rows], dtype=float)
    taught_acc = np.array([np.mean(r["taught_correct"]) for r in rows], dtype=float)
    deltas = taught_acc - base_acc
    ci_low, ci_high = bootstrap_mean_ci(deltas, samples=bootstrap_samples, seed=seed)

    counts = [_pair_counts(r) for r in rows]
    n_pairs, degraded, improved = (sum(c[i] for c in counts) for i in range(3))

    base_completed = [c for r in rows for c in r["baseline_completed"]]
    taught_completed = [c for r in rows for c in r["taught_completed"]]
    base_tokens = float(np.mean([t for r in rows for t in r["baseline_tokens"]]))
    taught_tokens = float(np.mean([t for r in rows for t in r["taught_tokens"]]))

    logp_base = [float(r["baseline_logp"]) for r in rows if r.get("baseline_logp") is not None]
    logp_taught = [float(r["taught_logp"]) for r in rows if r.get("taught_logp") is not None]
    logp_deltas = [
        float(r["taught_logp"]) - float(r["baseline_logp"])
        for r in rows
        if r.get("baseline_logp") is not None and r.get("taught_logp") is not None
    ]
    k = max(max(len(r["baseline_correct"]), len(r["taught_correct"])) for r in rows)

    return {
        "baseline_accuracy": float(base_acc.mean()),
        "taught_accuracy": float(taught_acc.mean()),
        "accuracy_delta": float(deltas.mean()),
        "accuracy_delta_ci_low": ci_low,
        "accuracy_delta_ci_high": ci_high,
        "non_degradation_rate": 1.0 - degraded / n_pairs,
        "non_degradation_rate_problem": float(np.mean(taught_acc >= base_acc)),
        "improvement_rate": improved / n_pairs,
        "degradation_rate": degraded / n_pairs,
        "completion_rate_baseline": float(np.mean(base_completed)),
        "completion_rate_taught": float(np.mean(taught_completed)),
        "response_tokens_baseline": base_tokens,
        "response_tokens_taught": taught_tokens,
        "token_reduction": 1.0 - taught_tokens / base_tokens if base_tokens > 0 else None,
        "teaching_tokens": float(np.mean([r["teaching_tokens"] for r in rows])),
        "leak_rate": float(np.mean([r["leaked"] for r in rows])),
        "logp_gold_baseline": _mean_or_none(logp_base),
        "logp_gold_taught": _mean_or_none(logp_taught),
        "logp_gold_delta": _mean_or_none(logp_deltas),
        "n_problems": len(rows),
        "n_pairs": n_pairs,
        "k": k,
    }


def per_kind(rows: Sequence[Row], *, bootstrap_samples: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """`teacher_metrics` for each problem kind, kinds sorted by name."""
    kinds: dict[str, list[Row]] = {}
    for row in rows:
        kinds.setdefault(row["kind"], []).append(row)
    return {
        kind: teacher_metrics(kinds[kind], bootstrap_samples=bootstrap_samples, seed=seed) for kind in sorted(kinds)
    }


def evaluate_all(
    rows_by_teacher: Mapping[str, Sequence[Row]], *, bootstrap_samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The content of reports/eval.json: {"teachers": {name: {"overall": {...}, "per_kind": {kind: {...}}}}}."""
    teachers: dict[str, Any] = {}
    for name, rows in rows_by_teacher.items():
        teachers[name] = {
            "overall": teacher_metrics(rows, bootstrap_samples=bootstrap_samples, seed=seed),
            "per_kind": per_kind(rows, bootstrap_samples=bootstrap_samples, seed=seed),
        }
    result: dict[str, Any] = {"teachers": teachers}
    pairs = paired_differences(rows_by_teacher, bootstrap_samples=bootstrap_samples, seed=seed)
    if pairs:
        result["paired"] = pairs
    return result


# The comparisons between teachers that eval.json reports (when both were evaluated): what RL adds over SFT, and
# over the hand-rule baseline teacher.
PAIRS = (("grpo", "sft"), ("grpo", "rule"), ("sft", "rule"))


def paired_difference(
    a: Sequence[Row], b: Sequence[Row], *, bootstrap_samples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Taught accuracy of teacher `a` minus teacher `b`, paired over the same problems (matched by id), with its
    percentile bootstrap interval over problems; `wins` / `losses` count problems where `a` is better / worse."""
    by_id = {r["id"]: r for r in b}
    if {r["id"] for r in a} != set(by_id):
        raise ValueError("paired difference: the two teachers were evaluated on different problems")
    diffs = np.array([np.mean(r["taught_correct"]) - np.mean(by_id[r["id"]]["taught_correct"]) for r in a])
    low, high = bootstrap_mean_ci(diffs, samples=bootstrap_samples, seed=seed)
    return {
        "difference": float(diffs.mean()),
        "ci_low": low,
        "ci_high": high,
        "wins": int((diffs > 0).sum()),
        "losses": int((diffs < 0).sum()),
        "n_problems": len(diffs),
    }


def paired_differences(
    rows_by_teacher: Mapping[str, Sequence[Row]], *, bootstrap_samples: int = 1000, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """`paired_difference` for each pair of `PAIRS` whose two teachers were both evaluated, keyed "a-b"."""
    return {
        f"{a}-{b}": paired_difference(
            rows_by_teacher[a], rows_by_teacher[b], bootstrap_samples=bootstrap_samples, seed=seed
        )
        for a, b in PAIRS
        if a in rows_by_teacher and b in rows_by_teacher
    }


def problem_table(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """One flat record per (teacher, problem), for the per-problem outcomes artifact (e.g. `mlflow.log_table`)."""
    table = []
    for number, row in enumerate(rows, start=1):
        validate_outcome(row, f"outcome row {number}")
        m, degraded, improved = _pair_counts(row)
        base_acc = float(np.mean(row["baseline_correct"]))
        taught_acc = float(np.mean(row["taught_correct"]))
        base_logp, taught_logp = row.get("baseline_logp"), row.get("taught_logp")
        table.append(
            {
                "teacher": row["teacher"],
                "id": row["id"],
                "kind": row["kind"],
                "baseline_accuracy": base_acc,
                "taught_accuracy": taught_acc,
                "accuracy_delta": taught_acc - base_acc,
                "degraded_pairs": degraded,
                "improved_pairs": improved,
                "n_pairs": m,
                "completion_rate_baseline": float(np.mean(row["baseline_completed"])),
                "completion_rate_taught": float(np.mean(row["taught_completed"])),
                "response_tokens_baseline": float(np.mean(row["baseline_tokens"])),
                "response_tokens_taught": float(np.mean(row["taught_tokens"])),
                "teaching_tokens": row["teaching_tokens"],
                "leaked": row["leaked"],
                "logp_gold_delta": None
                if base_logp is None or taught_logp is None
                else float(taught_logp) - float(base_logp),
            }
        )
    return table
