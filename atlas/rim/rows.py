"""Trajectory rows: the fields a judge reads of one teaching interaction (`trajectory_columns`, the one mapping from
the protocol's records), building rows from TRL-style column kwargs, and combining judges into one reward per row.

Final reward of a row = weighted mean of the scores of the active judges that produced one, with the weights of
`aggregation.judge_weights` (1.0 when unset), renormalised over those judges. A judge that failed (score None)
is left out rather than counted as 0, and the row says so: it is a *partial* panel (`partial`, `judges_failed`,
and an `error` naming each failed judge), counted apart from full panels wherever rows are summed up. If no judge
scored (or all scoring judges weigh 0) the row's reward is None, which TRL treats as "not scored".

What a row's judgment says, for tables people read (`judgment_summary`, `judgment_columns`): each judge's score,
rationale and escalation with its reasons, as plain JSON and as three text columns (evaluation's teaching traces,
GRPO's RIM explanations).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from atlas.rim.audit import JudgeResult
from atlas.rim.config import RIMConfig
from atlas.teaching.protocol import extract_teaching
from atlas.teaching.records import ProbeRecord

TRAJECTORY_FIELDS = (
    "question",
    "ground_truth",
    "student_probe",
    "baseline_response",
    "baseline_accuracy",
    "teaching",
    "taught_response",
    "response",
)


def trajectory_columns(
    probes: Sequence[ProbeRecord], teachings: Sequence[str], taught_responses: Sequence[str]
) -> dict[str, list[Any]]:
    """The trajectory fields RIM judges read, one list entry per interaction: the problem and the student alone from
    its probe record, then the guidance it got and its answer with it."""
    return {
        "question": [p.problem for p in probes],
        "ground_truth": [p.ground_truth for p in probes],
        "student_probe": [p.probe for p in probes],
        "baseline_response": [p.first_attempt.text for p in probes],
        "baseline_accuracy": [p.baseline_accuracy for p in probes],
        "teaching": list(teachings),
        "taught_response": list(taught_responses),
    }


def message_text(value: Any) -> str:
    """Plain text of a completion or prompt given as a string or as chat messages (the last message's content)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return str(value.get("content", ""))
    if isinstance(value, Sequence) and value:
        return message_text(value[-1])
    return str(value)


def rows_from_columns(
    prompts: Sequence[Any] | None, completions: Sequence[Any] | None, columns: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One trajectory per completion from per-completion lists (scalars are shared by every row)."""
    lists = {k: v for k, v in columns.items() if k in TRAJECTORY_FIELDS and isinstance(v, list | tuple)}
    sizes = {len(v) for v in lists.values()}
    if completions is not None:
        sizes.add(len(completions))
    if prompts is not None:
        sizes.add(len(prompts))
    if len(sizes) > 1:
        detail = ", ".join(f"{k}={len(v)}" for k, v in lists.items())
        raise ValueError(f"RIM columns have different lengths ({detail}, completions={len(completions or [])})")
    n = sizes.pop() if sizes else 0
    rows = []
    for i in range(n):
        row: dict[str, Any] = {}
        for name in TRAJECTORY_FIELDS:
            if name in lists:
                row[name] = lists[name][i]
            elif name in columns and columns[name] is not None:
                row[name] = columns[name]
        if completions is not None and "teaching" not in lists and "teaching" not in columns:
            # what the student saw: the protocol's one extraction (a `<thinking>` block never reaches a judge)
            row["teaching"] = extract_teaching(message_text(completions[i]))
        if not row.get("question") and prompts is not None:
            row["question"] = message_text(prompts[i])
        rows.append(row)
    return rows


@dataclass
class RowResult:
    score: float | None
    judges: dict[str, JudgeResult]
    error: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def escalated(self) -> bool:
        return any(j.escalated for j in self.judges.values())

    @property
    def failed_judges(self) -> list[str]:
        return [name for name, j in self.judges.items() if j.score is None]

    @property
    def partial(self) -> bool:
        """Scored, but not by every judge of the panel."""
        return self.score is not None and bool(self.failed_judges)

    def to_dict(self, include_calls: bool = True) -> dict[str, Any]:
        return {
            "score": self.score,
            "partial": self.partial,
            "judges_failed": len(self.failed_judges),
            "judges_total": len(self.judges),
            "escalated": self.escalated,
            "error": self.error,
            "judges": {name: j.to_dict(include_calls=include_calls) for name, j in self.judges.items()},
        }


def combine(judges: Mapping[str, JudgeResult], cfg: RIMConfig) -> tuple[float | None, str | None]:
    """(reward, error): the error says why there is no reward, or which judges a partial panel lacks."""
    scored = [(cfg.judge_weight(name), r.score) for name, r in judges.items() if r.score is not None]
    total = sum(weight for weight, _ in scored)
    failed = [(name, r.error or "no score") for name, r in judges.items() if r.score is None]
    failures = "; ".join(f"{name}: {why}" for name, why in failed)
    if not scored or total <= 0:
        reason = "no judge could score this row" + (f" ({failures})" if failures else " (scoring judges weigh 0)")
        return None, reason
    score = sum(weight * score for weight, score in scored) / total
    if failed:
        return score, f"partial panel: {len(failed)} of {len(judges)} judges failed ({failures})"
    return score, None


def judgment_summary(result: RowResult) -> dict[str, Any]:
    """One row's judgment without the audit's calls and samples: whether a judge escalated to the arbiter, the row's
    error, and per judge its score, uncertainty, rationale, escalation (with the reasons), source and error."""
    judges = {
        name: {
            "score": j.score,
            "uncertainty": j.uncertainty,
            "rationale": j.rationale,
            "escalated": j.escalated,
            "escalation_reasons": list(j.escalation_reasons),
            "source": j.source,
            "error": j.error,
        }
        for name, j in result.judges.items()
    }
    return {"escalated": result.escalated, "error": result.error, "judges": judges}


def _score_text(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def judgment_columns(summary: Mapping[str, Any] | None) -> dict[str, str]:
    """`rim_rationale` (each judge's rationale, or why it could not score), `rim_escalated` (`no`, or
    `yes: <judge>: <reasons>; ...`) and `rim_judges` (`<judge>=<score> ...`) of a `judgment_summary`; all three
    empty for a row that was not judged."""
    if not summary:
        return {"rim_rationale": "", "rim_escalated": "", "rim_judges": ""}
    judges = summary.get("judges", {})
    rationale = " | ".join(f"{name}: {j.get('rationale') or j.get('error') or ''}" for name, j in judges.items())
    escalated = [
        f"{name}: {', '.join(j.get('escalation_reasons') or []) or 'escalated'}"
        for name, j in judges.items()
        if j.get("escalated")
    ]
    return {
        "rim_rationale": rationale,
        "rim_escalated": f"yes: {'; '.join(escalated)}" if escalated else "no",
        "rim_judges": " ".join(f"{name}={_score_text(j.get('score'))}" for name, j in judges.items()),
    }
