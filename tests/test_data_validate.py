"""Validate: the Great Expectations suite, quarantine, the split and the reports, end to end from ingest.

GX costs seconds to import; the context is built once per process and shared by every test here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atlas.config import build_config
from atlas.core import paths
from atlas.core.errors import InputError
from atlas.data.schema import RECORD_KEYS
from atlas.data.validation import run_suite
from atlas.stages.ingest import run as ingest
from atlas.stages.validate import run as validate

OUTPUTS = (paths.TRAIN, paths.EVAL, paths.SFT_DATA, paths.DATASET_CARD, paths.VALIDATION_REPORT, paths.QUARANTINE)


def config(**data):
    return build_config({"data": {"synthetic": {"n": 60, "seed": 3}, **data}})


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_synthetic_ingest_and_validate_give_clean_deterministic_splits(tmp_path, monkeypatch):
    outputs = {}
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)
        ingest(config())
        report = validate(config())
        outputs[run] = {p: Path(p).read_bytes() for p in OUTPUTS}
    assert outputs["a"] == outputs["b"]  # same seed: byte-identical files

    train, evals, sft = rows(paths.TRAIN), rows(paths.EVAL), rows(paths.SFT_DATA)
    assert report["passed"] and report["suite_success"] and report["bad"] == 0
    assert all(e["success"] for e in report["expectations"].values()) and len(report["expectations"]) >= 20
    assert len(train) + len(evals) == 60 and len(evals) > 0 and sft == train
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in evals} == {"eval"}
    assert not {r["problem"] for r in train} & {r["problem"] for r in evals}
    assert all(list(r) == list(RECORD_KEYS) for r in train + evals)
    assert paths.QUARANTINE.read_text(encoding="utf-8") == ""
    check = run_suite(train + evals, 20_000)  # the written rows pass the suite themselves
    assert check.passed_all and not check.bad

    card = json.loads(paths.DATASET_CARD.read_text(encoding="utf-8"))
    assert card["by_split"] == {"eval": len(evals), "train": len(train)}
    assert sum(card["by_kind"]["train"].values()) == len(train) and card["by_source"]["eval"] == {
        "synthetic": len(evals)
    }
    assert card["lengths"]["problem"]["count"] == 60 and len(card["content_sha256"]) == 64


def test_adding_rows_keeps_every_existing_problem_in_its_split(workdir):
    ingest(config())
    validate(config())
    before = {r["id"]: r["split"] for r in rows(paths.TRAIN) + rows(paths.EVAL)}
    bigger = config(synthetic={"n": 150, "seed": 3})
    ingest(bigger)
    validate(bigger)
    after = {r["id"]: r["split"] for r in rows(paths.TRAIN) + rows(paths.EVAL)}
    assert len(after) == 150 and all(after[rid] == split for rid, split in before.items())


def _plant(records: list[dict]) -> dict[str, tuple[dict, str]]:
    """Bad rows to append to records.jsonl: name -> (row, text its quarantine reason must contain)."""
    base = records[0]
    return {
        "unparseable": ({**base, "id": "bad-gt", "problem": "Unique one?", "ground_truth": "banana split"}, "parsed"),
        "duplicate id": ({**base, "problem": "A different problem?"}, "duplicate id"),
        "duplicate problem": ({**base, "id": "bad-dup", "problem": base["problem"].upper()}, "duplicate problem"),
        "wrong type": ({**base, "id": "bad-type", "problem": 12345}, "wrong type"),
        "empty teaching": ({**base, "id": "bad-empty", "problem": "Empty teaching?", "teaching": " "}, "empty"),
        "unknown source": ({**base, "id": "bad-src", "problem": "Where from?", "source": "scraped"}, "source"),
        "missing key": ({k: v for k, v in base.items() if k != "kind"} | {"id": "bad-keys", "problem": "K?"}, "keys"),
        "too long": ({**base, "id": "bad-long", "problem": "Long? " + "x" * 25_000}, "longer than"),
        "no target": ({**base, "id": "bad-target", "problem": "Nothing?", "ground_truth": None, "teaching": None},
                      "neither"),
        "bad split": ({**base, "id": "bad-split", "problem": "Which split?", "split": "test"}, "split"),
    }  # fmt: skip


def test_planted_bad_rows_are_quarantined_with_reasons(workdir):
    ingest(config())
    records = rows(paths.RECORDS)
    planted = _plant(records)
    with paths.RECORDS.open("a", encoding="utf-8") as fh:
        for row, _ in planted.values():
            fh.write(json.dumps(row) + "\n")
    report = validate(config(max_bad_fraction=0.2))
    quarantined = rows(paths.QUARANTINE)
    assert report["passed"] and not report["suite_success"] and report["bad"] == len(planted) == len(quarantined)
    for (row, reason), got in zip(planted.values(), quarantined, strict=True):
        assert got["id"] == row["id"] and reason in got["reason"], (reason, got["reason"])
    assert sorted(q["line"] for q in quarantined) == list(range(61, 61 + len(planted)))
    kept = {r["id"]: r for r in rows(paths.TRAIN) + rows(paths.EVAL)}
    assert records[0]["id"] in kept and kept[records[0]["id"]]["problem"] == records[0]["problem"]
    assert not {"bad-gt", "bad-type", "bad-src", "bad-long"} & set(kept)
    failed = {name for name, e in report["expectations"].items() if not e["success"]}
    assert {"ground_truth_parses", "unique_id", "unique_problem", "problem_type", "allowed_source"} <= failed


def test_expectations_are_native_on_the_raw_columns():
    """GX's own expectations read the record fields as they are; only the rules GX has no expectation for read a
    derived column (the per-row key set, the project's answer parser, the normalized problem text)."""
    from atlas.data.schema import RECORD_KEYS
    from atlas.data.validation import build_checks

    checks = build_checks(20_000)
    derived = {c.column for c in checks} - set(RECORD_KEYS)
    assert derived == {"keys_match", "ground_truth_parses", "problem_key"}
    by_name = {c.name: c for c in checks}
    assert (by_name["unique_id"].expectation, by_name["unique_id"].column) == ("ExpectColumnValuesToBeUnique", "id")
    assert by_name["problem_length"].expectation == "ExpectColumnValueLengthsToBeBetween"
    assert by_name["has_target"].kwargs["row_condition"] == "ground_truth.isnull()"
    assert {c.expectation for c in checks if c.column in ("keys_match", "ground_truth_parses")} == {
        "ExpectColumnValuesToBeInSet"
    }


def test_too_many_bad_rows_fail_and_leave_the_processed_data_untouched(workdir):
    ingest(config())
    validate(config())
    previous = {p: Path(p).read_bytes() for p in (paths.TRAIN, paths.EVAL, paths.SFT_DATA, paths.DATASET_CARD)}
    records = rows(paths.RECORDS)
    records[4]["ground_truth"] = "not a number at all"
    records[9]["problem"] = ""
    paths.RECORDS.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    with pytest.raises(InputError) as caught:
        validate(config(max_bad_fraction=0.02))
    message = str(caught.value)
    assert "2 of 60 records" in message and "data.max_bad_fraction=0.02" in message
    assert f"{paths.RECORDS}: line 5: field 'ground_truth'" in message
    assert f"{paths.RECORDS}: line 10: field 'problem'" in message
    assert {p: Path(p).read_bytes() for p in previous} == previous
    report = json.loads(paths.VALIDATION_REPORT.read_text(encoding="utf-8"))
    assert report["passed"] is False and report["bad"] == 2 and len(rows(paths.QUARANTINE)) == 2


def test_caps_and_sft_only_rows(workdir):
    sft_only = {"problem_text": "Explain why 0.999... equals 1.", "teacher_teaching": "Think of 1/3 as 0.333...",
                "student_approach": "I think they differ."}  # fmt: skip
    incoming = workdir / "data/incoming/extra.jsonl"
    incoming.parent.mkdir(parents=True)
    incoming.write_text(json.dumps(sft_only) + "\n", encoding="utf-8")
    cfg = config(synthetic={"n": 80, "seed": 3}, max_train=10, max_eval=5)
    ingest(cfg)
    report = validate(cfg)
    train, evals = rows(paths.TRAIN), rows(paths.EVAL)
    assert len(train) == 10 and len(evals) == 5 and report["split"]["train_before_cap"] > 10
    assert all(r["ground_truth"] is not None for r in train + evals)
    sft = rows(paths.SFT_DATA)
    assert len(sft) == report["split"]["sft"] >= 50  # the SFT set is not capped by max_train
    in_train = any(r["problem"] == sft_only["problem_text"] for r in sft)
    assert in_train == (report["split"]["sft"] == report["split"]["train_before_cap"] + 1)


def test_validate_without_records_says_to_ingest_first(workdir):
    with pytest.raises(InputError, match="atlas ingest"):
        validate(config())
