"""The one normalized teaching record, and the mapping from every accepted source schema onto it.

A normalized record is one JSON object per line with exactly these keys, in this order:

    id, problem, ground_truth, kind, source, split, approach, diagnosis, teaching

Source rows may use the field names of Arc-ATLAS-Teach (`training/sft.jsonl`: problem_text, student_approach,
teacher_diagnosis, teacher_teaching; `training/rl.jsonl`: prompt, ground_truth), the aliases seen in the wild
(`question`, `answer`, `solution`) or the normalized names themselves. Unknown fields are ignored.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

RECORD_KEYS = ("id", "problem", "ground_truth", "kind", "source", "split", "approach", "diagnosis", "teaching")
TEXT_FIELDS = ("problem", "ground_truth", "approach", "diagnosis", "teaching")
SOURCES = ("synthetic", "hub", "local", "incoming")
SPLITS = ("train", "eval")
UNKNOWN_KIND = "unknown"

# normalized field -> names accepted in a source row, in priority order (the first present, non-null one wins)
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "problem_id", "uid"),
    "problem": ("problem", "prompt", "problem_text", "question"),
    "ground_truth": ("ground_truth", "answer", "solution"),
    "kind": ("kind",),
    "approach": ("approach", "student_approach"),
    "diagnosis": ("diagnosis", "teacher_diagnosis"),
    "teaching": ("teaching", "teacher_teaching"),
}


@dataclass(frozen=True)
class RowProblem:
    """One problem with one source row. `fatal` problems make a row unusable (it cannot be normalized)."""

    origin: str
    row: int
    field: str | None
    message: str
    fatal: bool = True
    unit: str = "line"

    def __str__(self) -> str:
        where = f"{self.origin}: {self.unit} {self.row}"
        return f"{where}: field '{self.field}': {self.message}" if self.field else f"{where}: {self.message}"


def problem_key(text: str) -> str:
    """The problem text as compared for duplicates and hashed for the split: NFKC, case-folded, whitespace collapsed."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def loose_problem_key(text: str) -> str:
    """A looser key for near-exact duplicates: only letters and digits survive (punctuation and spacing ignored)."""
    return "".join(ch for ch in problem_key(text) if ch.isalnum())


def stable_id(problem: str) -> str:
    return "p-" + hashlib.sha256(problem_key(problem).encode("utf-8")).hexdigest()[:16]


def make_record(
    *,
    id: str,  # noqa: A002 (the record's field name)
    problem: str,
    ground_truth: str | None,
    source: str,
    kind: str = UNKNOWN_KIND,
    split: str | None = None,
    approach: str | None = None,
    diagnosis: str | None = None,
    teaching: str | None = None,
) -> dict[str, Any]:
    """A record with the keys in the contract's order."""
    values = {
        "id": id,
        "problem": problem,
        "ground_truth": ground_truth,
        "kind": kind,
        "source": source,
        "split": split,
        "approach": approach,
        "diagnosis": diagnosis,
        "teaching": teaching,
    }
    return {key: values[key] for key in RECORD_KEYS}


def record_line(record: dict[str, Any]) -> str:
    """One JSONL line of a normalized record (keys in contract order, non-ASCII kept)."""
    return json.dumps({key: record.get(key) for key in RECORD_KEYS}, ensure_ascii=False, sort_keys=False) + "\n"


def _clean_text(value: str) -> str:
    return value.replace("\r\n", "\n").replace("\r", "\n").strip()


def _pick(raw: dict[str, Any], field: str) -> tuple[str | None, Any]:
    for name in FIELD_ALIASES[field]:
        if name in raw and raw[name] is not None:
            return name, raw[name]
    return None, None


def _as_text(value: Any, numbers_ok: bool) -> tuple[str | None, str | None]:
    """(text, error) for one field value; numbers are accepted where a source may store them as numbers."""
    if isinstance(value, str):
        return _clean_text(value), None
    if numbers_ok and isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and value != value:  # NaN: a missing value in a parquet column
            return None, None
        if isinstance(value, float) and value.is_integer():
            return str(int(value)), None
        return str(value), None
    expected = "a string or a number" if numbers_ok else "a string"
    return None, f"wrong type: expected {expected}, got {type(value).__name__}"


def _ground_truth_from_solution(text: str) -> str:
    """A worked `solution` (RLT-style) states its answer in \\boxed{}, tags or "the answer is": keep just that."""
    from atlas.teaching.answers import EXPLICIT_METHODS, find_answer, parse_answer

    found = find_answer(text)
    if found.method in EXPLICIT_METHODS and found.answer and parse_answer(found.answer) is not None:
        return found.answer.strip()
    return text


def normalize_row(
    raw: Any, *, source: str, origin: str, row: int, unit: str, max_field_chars: int
) -> tuple[dict[str, Any] | None, list[RowProblem]]:
    """Map one source row onto the normalized record.

    Returns (record or None, problems). Fatal problems (not an object, wrong type, missing required field) give no
    record. Content problems (empty or overlong text, ground truth that cannot be parsed) keep the record so that
    validation can quarantine it; the caller decides whether there are too many.
    """

    def problem(field: str | None, message: str, fatal: bool = True) -> RowProblem:
        return RowProblem(origin, row, field, message, fatal, unit)

    if not isinstance(raw, dict):
        return None, [problem(None, f"expected a JSON object, got {type(raw).__name__}")]
    problems: list[RowProblem] = []
    values: dict[str, Any] = {}
    mistyped: set[str] = set()
    names: dict[str, str] = {}  # normalized field -> the name it had in the source row
    for field in FIELD_ALIASES:
        name, value = _pick(raw, field)
        if name is None:
            values[field] = None
            continue
        names[field] = name
        text, error = _as_text(value, numbers_ok=field in ("id", "ground_truth"))
        if error:
            problems.append(problem(name, error))
            mistyped.add(field)
        values[field] = text
        if text is not None and field == "ground_truth" and name == "solution":
            values[field] = _ground_truth_from_solution(text)

    if values["problem"] is None and "problem" not in mistyped:
        accepted = ", ".join(FIELD_ALIASES["problem"])
        problems.append(problem("problem", f"missing required field (accepted names: {accepted})"))
    has_target = values["ground_truth"] is not None or values["teaching"]
    if not has_target and not mistyped & {"ground_truth", "teaching"}:
        accepted = ", ".join(FIELD_ALIASES["ground_truth"])
        message = f"missing required field (accepted names: {accepted}; or teacher_teaching for SFT rows)"
        problems.append(problem("ground_truth", message))
    if any(p.fatal for p in problems):
        return None, problems

    for field in TEXT_FIELDS:
        text = values[field]
        if text is not None and len(text) > max_field_chars:
            limit = f"data.max_field_chars={max_field_chars}"
            problems.append(problem(names[field], f"too long ({len(text)} chars > {limit})", False))
    if values["problem"] == "":
        problems.append(problem(names["problem"], "empty text", False))
    if values["ground_truth"] is not None:
        from atlas.teaching.answers import parse_answer

        if parse_answer(values["ground_truth"]) is None:
            shown = values["ground_truth"][:60]
            problems.append(problem(names["ground_truth"], f"cannot be parsed as a math answer ({shown!r})", False))

    record = make_record(
        id=values["id"] or "",
        problem=values["problem"],
        ground_truth=values["ground_truth"],
        kind=values["kind"] or UNKNOWN_KIND,
        source=source,
        approach=values["approach"] or None,
        diagnosis=values["diagnosis"] or None,
        teaching=values["teaching"] or None,
    )
    return record, problems
