"""Hostile data drops and unbounded inputs: a drop that repeats curated problems with other answers is a reported
conflict (the curated answer stays), a drop with bad lines is set aside with a report naming every bad line (and the
runs after it proceed, also under a real `dvc repro`), and every input a stage reads is capped by its configuration."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from atlas.config import build_config
from atlas.core import paths
from atlas.stages.ingest import run as ingest
from atlas.stages.validate import run as validate
from tests.conftest import _bin_env, make_project
from tests.faults import atlas, one_error_line


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


def _write(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def _config(**data):
    return build_config({"data": {"synthetic": {"n": 48, "seed": 0}, "eval_fraction": 0.25, **data}})


@pytest.fixture
def curated(tmp_path, monkeypatch):
    """A processed synthetic set (ingest + validate) in an empty working directory; returns two eval problems."""
    monkeypatch.chdir(tmp_path)
    ingest(_config())
    validate(_config())
    return _rows(paths.EVAL)[:2]


def _off_by_one(rows: list[dict]) -> list[dict]:
    return [{"question": r["problem"], "answer": str(int(r["ground_truth"]) + 1)} for r in rows]


def _truth(problem: str) -> str:
    return next(r["ground_truth"] for r in _rows(paths.RECORDS) if r["problem"] == problem)


def test_a_drop_that_repeats_eval_problems_with_wrong_answers_is_a_reported_conflict(curated, caplog):
    drop = _write(Path("data/incoming/fixes.jsonl"), _off_by_one(curated))
    with caplog.at_level(logging.WARNING):
        summary = ingest(_config())
    for row in curated:
        assert _truth(row["problem"]) == row["ground_truth"]  # the curated answer stays
    validate(_config())
    graded = {r["id"]: r["ground_truth"] for r in _rows(paths.EVAL)}
    assert graded.items() >= {r["id"]: r["ground_truth"] for r in curated}.items()
    assert summary["incoming_rejected_rows"] == 2 and summary["incoming_rejected_files"] == 1
    # reported with the file, the line, the field and both answers
    report = (drop.parent / "rejected" / "fixes.jsonl.report.txt").read_text(encoding="utf-8")
    for line, row in enumerate(curated, start=1):
        wrong = str(int(row["ground_truth"]) + 1)
        expected = f"{drop}: line {line}: field 'ground_truth': conflicts with curated record '{row['id']}'"
        assert any(expected in x and f"'{wrong}' here, '{row['ground_truth']}' there" in x for x in report.splitlines())
        assert any(expected in r.getMessage() for r in caplog.records)
    assert not drop.exists() and (drop.parent / "rejected" / "fixes.jsonl").exists()


def test_the_same_problem_with_the_same_answer_is_a_duplicate_dropped_and_counted(curated):
    before = _rows(paths.RECORDS)
    same = [{"question": r["problem"], "answer": r["ground_truth"]} for r in curated]
    equivalent = {"problem": curated[0]["problem"], "ground_truth": f"{curated[0]['ground_truth']}.0"}
    _write(Path("data/incoming/again.jsonl"), [*same, equivalent])
    summary = ingest(_config())
    assert summary["incoming_duplicates"] == 3 and summary["incoming_rows"] == 0
    assert summary["incoming_rejected_rows"] == 0
    assert _rows(paths.RECORDS) == before
    assert Path("data/incoming/again.jsonl").exists()  # nothing wrong with it: it stays


def test_a_drop_may_correct_curated_answers_when_configured_and_it_is_logged(curated, caplog):
    _write(Path("data/incoming/fixes.jsonl"), _off_by_one(curated))
    with caplog.at_level(logging.WARNING):
        summary = ingest(_config(conflicts="take_incoming"))
    assert summary["incoming_replaced"] == 2
    for row in curated:
        assert _truth(row["problem"]) == str(int(row["ground_truth"]) + 1)
    assert sum("take_incoming" in r.getMessage() for r in caplog.records) == 2


BAD_DROP = [
    {"question": "Ann has 3 pens and buys 4 more. How many pens does she have?", "answer": "7"},
    '{"question": "broken",',
    {"answer": "3"},
    {"question": "Name the colour of the sky.", "answer": "banana split"},
    {"question": "Bo has 5 cups and buys 2 more. How many cups does he have?", "answer": "7"},
]


def test_a_drop_with_bad_lines_is_set_aside_with_every_problem_and_the_next_run_proceeds(curated, caplog):
    drop = _write(Path("data/incoming/batch.jsonl"), BAD_DROP)
    original, before = drop.read_text(encoding="utf-8"), _rows(paths.RECORDS)
    with caplog.at_level(logging.WARNING):
        summary = ingest(_config())  # does not fail: the drop is moved aside
    assert summary["incoming_rejected_files"] == 1 and summary["incoming_rows"] == 0
    assert _rows(paths.RECORDS) == before  # all or none: nothing of the file was taken
    report = (drop.parent / "rejected" / "batch.jsonl.report.txt").read_text(encoding="utf-8").splitlines()
    problems = [line for line in report if not line.startswith("#")]
    assert [p.split(": ")[1] for p in problems] == ["line 2", "line 3", "line 4"]  # every bad line, at once
    assert "invalid JSON" in problems[0] and "field 'problem'" in problems[1] and "cannot be parsed" in problems[2]
    assert all(str(drop) in p for p in problems)
    assert (drop.parent / "rejected" / "batch.jsonl").read_text(encoding="utf-8") == original  # moved as it was
    logged = [r.getMessage() for r in caplog.records]
    assert all(any(p in m for m in logged) for p in problems)
    again = ingest(_config())
    assert again["incoming_files"] == 0 and _rows(paths.RECORDS) == before


def test_passing_rows_of_a_drop_can_be_taken_and_only_the_bad_lines_set_aside(curated):
    drop = _write(Path("data/incoming/batch.jsonl"), BAD_DROP)
    summary = ingest(_config(incoming_rows="passing"))
    assert summary["incoming_rows"] == 2 and summary["incoming_rejected_rows"] == 3
    taken = [r for r in _rows(paths.RECORDS) if r["source"] == "incoming"]
    assert sorted(r["problem"][:3] for r in taken) == ["Ann", "Bo "]
    assert len(_rows(drop)) == 2  # the drop keeps its good rows for the next runs
    assert len((drop.parent / "rejected" / "batch.jsonl").read_text(encoding="utf-8").splitlines()) == 3
    assert ingest(_config(incoming_rows="passing"))["incoming_rows"] == 2  # and the next run takes them again


def test_a_drop_file_larger_than_the_cap_is_rejected_whole(curated):
    rows = [{"question": f"What is {i} plus {i + 1}?", "answer": str(2 * i + 1)} for i in range(30)]
    drop = _write(Path("data/incoming/huge.jsonl"), rows)
    summary = ingest(_config(max_incoming_rows=20))
    assert summary["incoming_rejected_files"] == 1 and not drop.exists()
    report = (drop.parent / "rejected" / "huge.jsonl.report.txt").read_text(encoding="utf-8")
    assert "30 rows, more than data.max_incoming_rows=20" in report


def test_sft_demonstrations_are_capped(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build_config({"data": {"synthetic": {"n": 200, "seed": 0}, "max_sft": 25}})
    ingest(cfg)
    report = validate(cfg)
    assert len(_rows(paths.SFT_DATA)) == 25 and report["split"]["sft_before_cap"] > 25
    card = json.loads(paths.DATASET_CARD.read_text(encoding="utf-8"))
    assert card["files"]["sft"]["rows"] == 25 and card["settings"]["max_sft"] == 25


def test_every_input_that_grows_with_the_data_has_a_finite_default_cap():
    data = build_config({}).data
    assert all(isinstance(v, int) for v in (data.max_train, data.max_eval, data.max_sft, data.max_incoming_rows))


def test_synthetic_n_beyond_the_generator_is_one_config_error_naming_the_maximum(project):
    done = atlas(["ingest", "--set", "data.synthetic.n=9600"], project)
    assert done.returncode == 2
    error = one_error_line(done.stderr)
    assert "data.synthetic.n=9600" in error and "at most" in error
    maximum = int(error.split("at most ")[1].split()[0])
    assert 48 < maximum < 9600
    assert atlas(["ingest", "--set", f"data.synthetic.n={maximum}"], project).returncode == 0


def test_dvc_repro_with_a_rejected_drop_proceeds_and_is_then_up_to_date(tmp_path):
    root = make_project(tmp_path / "p")
    env = {**_bin_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    _write(root / "data/incoming/bad.jsonl", BAD_DROP)

    def dvc(*args):
        return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, env=env, capture_output=True, text=True)

    first = dvc("repro", "ingest")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert (root / "data/incoming/rejected/bad.jsonl.report.txt").exists()
    assert not (root / "data/incoming/bad.jsonl").exists()
    status = dvc("status", "ingest")
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout
    again = dvc("repro", "ingest")
    assert "didn't change, skipping" in again.stdout + again.stderr
    # a good drop arrives: ingest runs again and takes it
    _write(root / "data/incoming/good.jsonl", [{"question": "Cy has 2 hats and buys 9 more. How many?", "answer": 11}])
    third = dvc("repro", "ingest")
    assert third.returncode == 0 and "Running stage 'ingest'" in third.stdout
    assert "Cy has 2 hats" in (root / "data/interim/records.jsonl").read_text(encoding="utf-8")
