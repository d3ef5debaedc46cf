"""Screening the files dropped into `data.incoming_dir` before ingest merges them with the curated source.

A drop never silently changes curated data, and a bad drop never blocks the runs after it:

- every line of every drop file is checked (JSON, the record schema, text limits, answers that parse, ids), and all
  problems of all files are reported at once, one line each: file, line, field, what is wrong;
- the same problem (normalized text, `schema.problem_key`) as a curated record or an earlier drop row is a
  *duplicate* when the answers agree (dropped and counted; missing approach/diagnosis/teaching fill the curated
  record's empty fields) and a *conflict* when they differ: reported with both answers, and the curated answer stays
  (`data.conflicts: keep_curated`, the default: the drop row is rejected) unless `data.conflicts: take_incoming`
  says the drop corrects it (the replacement is logged); between two drop rows the earlier one stays;
- a file with any rejected line is taken all or none (`data.incoming_rows: all_or_none`, the default: the whole file
  is moved to `<incoming>/rejected/` with a `.report.txt` next to it), or only its passing rows are kept (`passing`:
  the file is rewritten without its bad lines, which go to `rejected/` with their report);
- a file with more than `data.max_incoming_rows` lines is rejected whole (the cost of a run stays bounded).

`rejected/` is listed in `.dvcignore`, so moving a file there is, for DVC, the file leaving the ingest stage's
`data/incoming` dependency: the next `dvc repro` sees the folder as this run left it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.config import DataSettings
from atlas.core import paths
from atlas.core.io import atomic_path, atomic_write_text, free_name, move
from atlas.data import sources
from atlas.data.schema import normalize_row, problem_key, stable_id

log = logging.getLogger(__name__)
_FILL_FIELDS = ("approach", "diagnosis", "teaching")


@dataclass
class DropFile:
    """What screening decided about one drop file."""

    path: Path
    lines: list[bytes] = field(default_factory=list)  # the raw lines, to write the passing or the bad ones back
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # line -> normalized record, for passing lines
    problems: dict[int, list[str]] = field(default_factory=dict)  # line (0: the whole file) -> problems
    duplicates: int = 0
    merged: int = 0
    replaced: int = 0
    verdict: str = "taken"  # taken | partial | rejected

    @property
    def rejected_lines(self) -> list[int]:
        return sorted(n for n in self.problems if n)

    def problem_lines(self) -> list[str]:
        return [p for n in sorted(self.problems) for p in self.problems[n]]


@dataclass
class Screened:
    """The drop rows to merge (normalized, ids assigned), and a decision per file."""

    records: list[dict[str, Any]]
    files: list[DropFile]

    def stats(self) -> dict[str, int]:
        return {
            "incoming_files": len(self.files),
            "incoming_rows": len(self.records),
            "incoming_duplicates": sum(f.duplicates for f in self.files),
            "incoming_merged": sum(f.merged for f in self.files),
            "incoming_replaced": sum(f.replaced for f in self.files),
            "incoming_rejected_rows": sum(len(f.rejected_lines) for f in self.files),
            "incoming_rejected_files": sum(f.verdict == "rejected" for f in self.files),
        }


def _same_answer(a: str | None, b: str | None) -> bool:
    from atlas.teaching.answers import answers_match

    if a is None or b is None:
        return True  # a row without an answer (an SFT demonstration) does not contradict one with it
    return a.strip() == b.strip() or answers_match(a, b)


class _Index:
    """The records merged so far (curated first, then accepted drop rows): by problem key and by id."""

    def __init__(self, curated: list[dict[str, Any]]):
        self.by_key: dict[str, tuple[dict[str, Any], str]] = {}
        self.ids: set[str] = set()
        for record in curated:
            self.by_key.setdefault(problem_key(record["problem"]), (record, f"curated record '{record['id']}'"))
            self.ids.add(record["id"])


def screen(folder: Path, curated: list[dict[str, Any]], data: DataSettings) -> Screened:
    """Check every drop file in `folder` against the curated records (which may be updated in place: filled
    fields, or a replaced answer under `take_incoming`) and against each other."""
    index, out, files = _Index(curated), [], []
    for path in sorted(Path(folder).glob("*.jsonl")) if Path(folder).is_dir() else []:
        drop = _screen_file(path, index, data)
        files.append(drop)
        if drop.problems:
            drop.verdict = "partial" if data.incoming_rows == "passing" and drop.records else "rejected"
        if drop.verdict == "rejected":
            drop.records = {}
        for line, record in sorted(drop.records.items()):
            key = problem_key(record["problem"])
            index.by_key.setdefault(key, (record, f"{path} line {line}"))
            index.ids.add(record["id"])
            out.append(record)
    return Screened(out, files)


def _screen_file(path: Path, index: _Index, data: DataSettings) -> DropFile:
    drop = DropFile(path)
    raw = path.read_bytes()
    drop.lines = raw.split(b"\n")
    count = sum(1 for line in drop.lines if line.strip())
    if not count:
        drop.problems[0] = [f"{path}: file is empty"]
        return drop
    if count > data.max_incoming_rows:
        drop.problems[0] = [f"{path}: {count} rows, more than data.max_incoming_rows={data.max_incoming_rows}"]
        return drop
    rows, structural = sources.parse_jsonl(raw, str(path))
    for line, problem in structural:
        drop.problems.setdefault(line, []).append(problem)
    pending: dict[str, tuple[dict[str, Any], int]] = {}  # this file's rows, until the file's verdict
    ids: set[str] = set()
    for line, value in rows:
        record, found = normalize_row(
            value, source="incoming", origin=str(path), row=line, unit="line", max_field_chars=data.max_field_chars
        )
        problems = [str(p) for p in found]
        if record is not None and not problems:
            problems = _identity(record, line, path, index, pending, ids, drop, data)
        if problems:
            drop.problems.setdefault(line, []).extend(problems)
        elif record is not None and record["id"]:
            drop.records[line] = record
    return drop


def _identity(
    record: dict[str, Any],
    line: int,
    path: Path,
    index: _Index,
    pending: dict[str, tuple[dict[str, Any], int]],
    ids: set[str],
    drop: DropFile,
    data: DataSettings,
) -> list[str]:
    """Duplicate, conflict or id checks of one well-formed drop row; its problems (empty: the row is taken).
    A duplicate is counted and leaves the record without an id (not taken, not a problem)."""
    where = f"{path}: line {line}"
    key = problem_key(record["problem"])
    known = index.by_key.get(key)
    earlier = pending.get(key)
    if earlier is not None:
        known = (earlier[0], f"line {earlier[1]} of this file")
    if known is not None:
        other, origin = known
        if _same_answer(record["ground_truth"], other["ground_truth"]):
            drop.duplicates += 1
            filled = [f for f in _FILL_FIELDS if record[f] and not other[f]]
            if filled and origin.startswith("curated"):
                for name in filled:
                    other[name] = record[name]
                drop.merged += 1
            record["id"] = ""  # nothing to add
            return []
        conflict = (
            f"{where}: field 'ground_truth': conflicts with {origin}: the same problem, answer "
            f"{record['ground_truth']!r} here, {other['ground_truth']!r} there"
        )
        if origin.startswith("curated") and data.conflicts == "take_incoming":
            log.warning("%s (data.conflicts=take_incoming: the drop's answer replaces the curated one)", conflict)
            other["ground_truth"], other["source"] = record["ground_truth"], "incoming"
            drop.replaced += 1
            record["id"] = ""
            return []
        keep = " (data.conflicts=keep_curated: the curated answer stays)" if origin.startswith("curated") else ""
        return [conflict + keep]
    rid = record["id"]
    if rid and (rid in index.ids or rid in ids):
        return [f"{where}: field 'id': duplicate id '{rid}' (a curated record or an earlier row has it)"]
    if not rid:
        base, suffix = stable_id(record["problem"]), 1
        rid = base
        while rid in index.ids or rid in ids:
            suffix += 1
            rid = f"{base}-{suffix}"
        record["id"] = rid
    ids.add(rid)
    pending[key] = (record, line)
    return []


def set_aside(screened: Screened, folder: Path) -> list[Path]:
    """Move what was rejected out of the way of the next run, each with its report: a rejected file whole, or (with
    `passing`) the bad lines of a file whose passing rows were kept (the file is rewritten with those only).
    Returns the reports written."""
    reports = []
    rejected = Path(folder) / paths.INCOMING_REJECTED
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    for drop in screened.files:
        if drop.verdict == "taken":
            continue
        bad = drop.rejected_lines
        if drop.verdict == "rejected":
            target = move(drop.path, rejected)
            head = f"# {drop.path} was rejected by `atlas ingest` on {stamp}: no row of it was taken"
            head += f" (data.incoming_rows=all_or_none; {len(bad)} line(s) with problems)." if bad else "."
        else:
            target = free_name(rejected, drop.path.name)
            with atomic_path(target) as tmp:
                tmp.write_bytes(b"".join(drop.lines[n - 1] + b"\n" for n in bad))
            with atomic_path(drop.path) as tmp:
                tmp.write_bytes(b"\n".join(line for n, line in enumerate(drop.lines, start=1) if n not in set(bad)))
            head = (
                f"# {len(bad)} line(s) of {drop.path} were rejected by `atlas ingest` on {stamp} and moved here "
                f"(data.incoming_rows=passing: its {len(drop.records)} other rows were taken)."
            )
        report = target.with_name(target.name + ".report.txt")
        fix = f"# Fix the lines below and drop the corrected file into {folder}/ again."
        atomic_write_text(report, "\n".join([head, fix, *drop.problem_lines()]) + "\n")
        reports.append(report)
    return reports


def log_problems(screened: Screened) -> None:
    """Every problem of every drop file, one warning each (nothing is cut off), then one line per file."""
    for drop in screened.files:
        for problem in drop.problem_lines():
            log.warning("%s", problem)
        if drop.verdict == "rejected":
            log.warning(
                "rejected %s: moved to %s/ with its report", drop.path, drop.path.parent / paths.INCOMING_REJECTED
            )
        elif drop.verdict == "partial":
            log.warning("%s: %d bad line(s) moved aside, %d row(s) taken", drop.path, len(drop.rejected_lines),
                        len(drop.records))  # fmt: skip
