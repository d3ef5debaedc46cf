"""From raw source rows to normalized records: the failure policy of ingestion, merging of complementary rows and
id assignment.

Failure policy. Structural problems (missing or empty file, non-UTF-8 bytes, invalid JSON, wrong type, missing
required field) always stop ingest. Content problems (empty or overlong text, duplicate id, a ground truth that does
not parse) stop ingest when their rows are more than `data.max_bad_fraction` of the source; below that they pass
through and `validate` quarantines them. Every stop raises `InputError` with one line per problem.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from atlas.core.errors import InputError
from atlas.data import sources
from atlas.data.schema import UNKNOWN_KIND, RowProblem, normalize_row, problem_key, stable_id

log = logging.getLogger(__name__)

_MERGE_FIELDS = ("ground_truth", "approach", "diagnosis", "teaching")


@dataclass
class _Entry:
    record: dict[str, Any]
    origin: str
    row: int
    unit: str


def _mergeable(first: dict[str, Any], second: dict[str, Any]) -> bool:
    """The same problem split over two rows, e.g. its RL row (ground truth) and its SFT row (teaching)."""
    if first["id"] and second["id"] and first["id"] != second["id"]:
        return False
    if any(first[f] is not None and second[f] is not None and first[f] != second[f] for f in _MERGE_FIELDS):
        return False
    adds = any(first[f] is None and second[f] is not None for f in _MERGE_FIELDS)
    return adds and any(second[f] is None and first[f] is not None for f in _MERGE_FIELDS)


def _merge_complementary(entries: list[_Entry]) -> tuple[list[_Entry], int]:
    kept: list[_Entry] = []
    by_problem: dict[str, _Entry] = {}
    merged = 0
    for entry in entries:
        key = problem_key(entry.record["problem"])
        first = by_problem.get(key)
        if first is not None and _mergeable(first.record, entry.record):
            for name in ("id", *_MERGE_FIELDS):
                first.record[name] = first.record[name] or entry.record[name]
            if first.record["kind"] == UNKNOWN_KIND:
                first.record["kind"] = entry.record["kind"]
            merged += 1
            continue
        by_problem.setdefault(key, entry)
        kept.append(entry)
    return kept, merged


def _assign_ids(entries: list[_Entry]) -> list[RowProblem]:
    """Keep source ids (a repeated one is a content problem); give the rest a stable hash of the problem text."""
    problems, owner = [], {}
    for entry in entries:
        rid = entry.record["id"]
        if not rid:
            continue
        if rid in owner:
            first = owner[rid]
            where = f"{first.origin} {first.unit} {first.row}"
            problems.append(
                RowProblem(entry.origin, entry.row, "id", f"duplicate id '{rid}' (first at {where})", False, entry.unit)
            )
        else:
            owner[rid] = entry
    for entry in entries:
        if entry.record["id"]:
            continue
        base, suffix = stable_id(entry.record["problem"]), 1
        rid = base
        while rid in owner:
            suffix += 1
            rid = f"{base}-{suffix}"
        entry.record["id"] = rid
        owner[rid] = entry
    return problems


def normalize_tables(
    tables: list[sources.RawTable], max_field_chars: int, max_bad_fraction: float
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """All rows of all tables as normalized records (sorted by id), applying the failure policy of this module."""
    fatal, content, entries = [], [], []
    for table in tables:
        for row, raw in table.rows:
            record, problems = normalize_row(
                raw, source=table.source, origin=table.origin, row=row, unit=table.unit, max_field_chars=max_field_chars
            )
            fatal += [p for p in problems if p.fatal]
            content += [p for p in problems if not p.fatal]
            if record is not None:
                entries.append(_Entry(record, table.origin, row, table.unit))
    if fatal:
        raise InputError(sources.format_problems(fatal))
    total = len(entries)
    entries, merged = _merge_complementary(entries)
    content += _assign_ids(entries)
    bad_rows = len({(p.origin, p.row) for p in content})
    if content:
        share = bad_rows / max(total, 1)
        if share > max_bad_fraction:
            limit = f"data.max_bad_fraction={max_bad_fraction}"
            head = f"{bad_rows} of {total} rows ({share:.1%}) have problems, more than {limit}:"
            raise InputError(head + "\n" + sources.format_problems(content))
        for problem in content[: sources.MAX_PROBLEM_LINES]:
            log.warning("%s (left for validation to quarantine)", problem)
    records = sorted((e.record for e in entries), key=lambda r: r["id"])
    return records, {"rows_read": total, "merged": merged, "bad_rows": bad_rows}
