"""Teaching traces: each evaluation interaction as one row of text people can read in the MLflow UI.

A row joins one outcome of `reports/eval_outcomes.jsonl` (a teacher on a held-out problem) with the problem's probe
record (`data/probe/probes.jsonl`): the problem and its answer, the student's first attempt alone and the probe the
teacher saw, the teacher's guidance (empty = silent), the student's taught answer, their grades, the leak flag and
the RIM judgment when evaluation ran RIM: its score, each judge's rationale, whether a judge escalated to the arbiter
and why, and each judge's score (text, so the UI shows it; empty for a row without RIM). The evaluate
stage's MLflow logger (`atlas.ops.runner`) logs the rows with `mlflow.log_table`, so the run's artifact view shows
them as a table (MLflow 3.17's artifact view pages through it, with no filter; a clicked cell shows its
whole text in the Preview panel).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from atlas.core.errors import InputError
from atlas.rim.rows import judgment_columns
from atlas.teaching.metrics import read_outcomes
from atlas.teaching.records import ProbeRecord, read_probes

# The table's columns, in the order the UI shows them.
COLUMNS = (
    "teacher",
    "id",
    "kind",
    "problem",
    "ground_truth",
    "student_attempt",
    "student_correct",
    "probe",
    "guidance",
    "silent",
    "taught_answer",
    "taught_correct",
    "baseline_accuracy",
    "taught_accuracy",
    "leaked",
    "teaching_tokens",
    "rim_score",
    "rim_rationale",
    "rim_escalated",
    "rim_judges",
)


def _share(values: Sequence[bool]) -> float:
    return sum(values) / len(values)


def trace_rows(outcomes: Sequence[Mapping[str, Any]], probes: Mapping[str, ProbeRecord]) -> list[dict[str, Any]]:
    """One row per (teacher, problem); an outcome whose problem has no probe record is an error naming it (the
    outcomes and the probes are then of different runs)."""
    rows = []
    for number, outcome in enumerate(outcomes, start=1):
        probe = probes.get(outcome["id"])
        if probe is None:
            raise InputError(
                f"outcome row {number} (teacher '{outcome['teacher']}'): problem '{outcome['id']}' has no probe "
                "record: the outcomes and data/probe/probes.jsonl are of different runs (`dvc repro evaluate`)"
            )
        teaching = outcome.get("teaching") or ""
        rows.append(
            {
                "teacher": outcome["teacher"],
                "id": outcome["id"],
                "kind": outcome["kind"],
                "problem": probe.problem,
                "ground_truth": probe.ground_truth,
                "student_attempt": probe.first_attempt.text,
                "student_correct": probe.first_attempt.correct,
                "probe": probe.probe,
                "guidance": teaching,
                "silent": not teaching.strip(),
                "taught_answer": outcome.get("taught_response"),
                "taught_correct": outcome["taught_correct"][0],  # the graded sample the taught answer is
                "baseline_accuracy": _share(outcome["baseline_correct"]),
                "taught_accuracy": _share(outcome["taught_correct"]),
                "leaked": outcome["leaked"],
                "teaching_tokens": outcome["teaching_tokens"],
                "rim_score": outcome.get("rim_score"),
                **judgment_columns(outcome.get("rim")),
            }
        )
    return rows


def read_traces(outcomes_path: Path | str, probes_path: Path | str) -> list[dict[str, Any]]:
    """The trace rows of an outcomes file and the probe records it was evaluated on."""
    return trace_rows(read_outcomes(outcomes_path), read_probes(probes_path))


def traces_frame(rows: Sequence[Mapping[str, Any]]):
    """The rows as a DataFrame with the columns of `COLUMNS` (what `mlflow.log_table` takes)."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=list(COLUMNS))
