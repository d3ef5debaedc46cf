"""The Great Expectations suite over the normalized records, and the per-row verdicts it implies.

The records become a pandas frame of the record fields as read (any JSON type), and the suite runs GX's own
expectations on those raw columns: presence (`ExpectColumnValuesToNotBeNull`), type (`...ToBeInTypeList`), allowed
values (`...ToBeInSet`), text lengths (`ExpectColumnValueLengthsToBeBetween`) and blank text
(`...ToNotMatchRegex`), uniqueness of ids and of problems (`ExpectColumnValuesToBeUnique`, the problem on its
normalized key), and "a ground truth or teaching" (`...ToNotBeNull` on `teaching` where `ground_truth` is null).
Only two rules have no GX expectation and are derived columns computed here: the record has exactly the contract's
keys (a per-row key set; GX checks columns per table) and the ground truth parses as a math answer (the project's
parser). The suite runs with result_format COMPLETE, so every failing expectation names its rows; a row flagged by
any expectation is bad, with one reason per failed expectation. For duplicates the first occurrence is kept: only the
second and later rows with the same value are bad.

Great Expectations (GX 1.x API) is imported inside functions only: it costs seconds. One ephemeral context is built
per process and reused.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from atlas.data.schema import RECORD_KEYS, SOURCES, SPLITS, TEXT_FIELDS, problem_key

log = logging.getLogger(__name__)

_RUNS = itertools.count(1)
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class Check:
    name: str
    field: str  # the record field a failure is reported against
    column: str  # the frame column the expectation reads
    expectation: str  # GX expectation class name
    kwargs: dict[str, Any]
    reason: str
    keep_first: bool = False  # a uniqueness check: the first row with a value is not bad, the later ones are


@dataclass
class CheckResult:
    name: str
    expectation: str
    column: str
    success: bool
    unexpected_count: int


@dataclass
class SuiteOutcome:
    checks: list[CheckResult]
    bad: dict[int, list[tuple[str, str, str]]] = field(default_factory=dict)  # row index -> [(check, field, reason)]
    gx_version: str = ""

    @property
    def passed_all(self) -> bool:
        return all(c.success for c in self.checks)


def build_checks(max_field_chars: int) -> list[Check]:
    in_set, true = "ExpectColumnValuesToBeInSet", {"value_set": [True]}
    checks = [
        Check("keys_match", "(record)", "keys_match", in_set, true,
              f"record keys differ from {', '.join(RECORD_KEYS)}"),
        Check("has_target", "ground_truth", "teaching", "ExpectColumnValuesToNotBeNull",
              {"row_condition": "ground_truth.isnull()", "condition_parser": "pandas"},
              "neither a ground truth nor teaching"),
        Check("ground_truth_parses", "ground_truth", "ground_truth_parses", in_set, true,
              "cannot be parsed as a math answer"),
        Check("unique_id", "id", "id", "ExpectColumnValuesToBeUnique", {}, "duplicate id (an earlier row has it)",
              keep_first=True),
        Check("unique_problem", "problem", "problem_key", "ExpectColumnValuesToBeUnique", {},
              "duplicate problem (an earlier row has the same text)", keep_first=True),
        Check("allowed_source", "source", "source", in_set, {"value_set": list(SOURCES)},
              f"source not one of {', '.join(SOURCES)}"),
        Check("allowed_split", "split", "split", in_set, {"value_set": list(SPLITS)},
              f"split not null or one of {', '.join(SPLITS)}"),
    ]  # fmt: skip
    for column in ("id", "problem", "kind", "source"):
        checks.append(Check(f"{column}_present", column, column, "ExpectColumnValuesToNotBeNull", {}, "missing"))
    for column in ("id", "problem", "kind", "source", *TEXT_FIELDS[1:]):
        checks.append(
            Check(f"{column}_type", column, column, "ExpectColumnValuesToBeInTypeList", {"type_list": ["str"]},
                  "wrong type (expected a string)")
        )  # fmt: skip
    for column, limit in (("id", MAX_ID_CHARS), *((f, max_field_chars) for f in TEXT_FIELDS)):
        checks.append(
            Check(f"{column}_length", column, column, "ExpectColumnValueLengthsToBeBetween",
                  {"min_value": 1, "max_value": limit}, f"empty or longer than {limit} chars")
        )  # fmt: skip
        checks.append(
            Check(f"{column}_blank", column, column, "ExpectColumnValuesToNotMatchRegex", {"regex": r"^\s*$"},
                  "empty text (only whitespace)")
        )  # fmt: skip
    return checks


def _derived(records: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The columns GX cannot compute itself: the per-row key check, the answer parser, the normalized problem."""
    from atlas.teaching.answers import parse_answer

    columns: dict[str, list[Any]] = {"keys_match": [], "ground_truth_parses": [], "problem_key": []}
    for record in records:
        truth, problem = record.get("ground_truth"), record.get("problem")
        columns["keys_match"].append(set(record) == set(RECORD_KEYS))
        columns["ground_truth_parses"].append(parse_answer(truth) is not None if isinstance(truth, str) else None)
        columns["problem_key"].append(problem_key(problem) if isinstance(problem, str) else None)
    return columns


def build_frame(records: list[dict[str, Any]]) -> Any:
    """The records (raw values, object dtype) plus the derived columns and a 1-based `row` number."""
    import pandas as pd

    data: dict[str, Any] = {"row": pd.Series(range(1, len(records) + 1), dtype="int64")}
    for key in RECORD_KEYS:
        data[key] = pd.Series([r.get(key) for r in records], dtype=object)
    for name, values in _derived(records).items():
        data[name] = pd.Series(values, dtype=object)
    return pd.DataFrame(data)


@functools.lru_cache(maxsize=1)
def _context() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    gx_logger = logging.getLogger("great_expectations")
    if gx_logger.level == logging.NOTSET:  # GX logs hundreds of INFO lines while it starts; keep its warnings
        gx_logger.setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    return context


def run_suite(records: list[dict[str, Any]], max_field_chars: int) -> SuiteOutcome:
    """Run the suite over the records; `bad` maps each flagged row index (0-based) to its (check, field, reason)s."""
    context = _context()  # first: it quiets GX's import-time logging
    import great_expectations as gx

    checks = build_checks(max_field_chars)
    run = next(_RUNS)
    suite = gx.ExpectationSuite(name=f"atlas-records-{run}")
    for check in checks:
        expectation_class = getattr(gx.expectations, check.expectation)
        suite.add_expectation(
            expectation_class(column=check.column, meta={"check": check.name}, description=check.reason, **check.kwargs)
        )
    suite = context.suites.add(suite)
    batch = context.data_sources.add_pandas(name=f"atlas-records-{run}").add_dataframe_asset(name="records")
    definition = gx.ValidationDefinition(
        name=f"atlas-records-{run}", data=batch.add_batch_definition_whole_dataframe("all"), suite=suite
    )
    definition = context.validation_definitions.add(definition)
    result = definition.run(
        batch_parameters={"dataframe": build_frame(records)},
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["row"]},
    )
    by_name = {c.name: c for c in checks}
    outcome = SuiteOutcome(checks=[], gx_version=gx.__version__)
    for item in result.results:
        check = by_name[item.expectation_config.meta["check"]]
        if (item.exception_info or {}).get("raised_exception"):
            raise RuntimeError(f"validation check {check.name} failed to run: {item.exception_info}")
        rows = _flagged_rows(item.result.get("unexpected_index_list") or [], check)
        outcome.checks.append(CheckResult(check.name, check.expectation, check.column, bool(item.success), len(rows)))
        for row in rows:
            outcome.bad.setdefault(row, []).append((check.name, check.field, check.reason))
    outcome.checks.sort(key=lambda c: c.name)
    outcome.bad = {row: sorted(set(reasons)) for row, reasons in sorted(outcome.bad.items())}
    return outcome


def _flagged_rows(unexpected: list[dict[str, Any]], check: Check) -> list[int]:
    """0-based indexes of the bad rows; a uniqueness check spares the first row of each repeated value."""
    rows = sorted((int(entry["row"]) - 1, entry.get(check.column)) for entry in unexpected)
    if not check.keep_first:
        return [row for row, _ in rows]
    first: dict[str, int] = {}
    for row, value in rows:
        first.setdefault(repr(value), row)
    return [row for row, value in rows if first[repr(value)] != row]


def build_report(outcome: SuiteOutcome, rows: int, max_bad_fraction: float, split: dict[str, int]) -> dict[str, Any]:
    """The content of reports/validation.json."""
    bad_fraction = len(outcome.bad) / rows
    return {
        "rows": rows,
        "bad": len(outcome.bad),
        "bad_fraction": round(bad_fraction, 6),
        "max_bad_fraction": max_bad_fraction,
        "passed": bad_fraction <= max_bad_fraction,
        "suite_success": outcome.passed_all,
        "expectations": {
            c.name: {
                "expectation": c.expectation,
                "column": c.column,
                "success": c.success,
                "unexpected": c.unexpected_count,
            }
            for c in outcome.checks
        },
        "bad_by_check": dict(sorted(Counter(check for found in outcome.bad.values() for check, _, _ in found).items())),
        "split": split,
        "gx_version": outcome.gx_version,
    }
