"""The typed probe record: written and read back unchanged, in the probe stage's JSON layout, and a record that does
not fit names the file and the record."""

from __future__ import annotations

import json

import pytest

from atlas.core.errors import InputError
from atlas.teaching.records import BaselineSample, ProbeRecord, read_probes, write_probes

RECORD = ProbeRecord(
    id="p1",
    split="eval",
    kind="add",
    problem="Ann has 2 pens and buys 3 more. How many pens?",
    ground_truth="5",
    probe="2 + 3 = 5",
    baseline=(BaselineSample("2 + 3 = 5\n<solution>5</solution>", 12, False, True, True),),
    baseline_accuracy=1.0,
    baseline_logp=-3.5,
)


def test_round_trip_and_layout(tmp_path):
    path = write_probes(
        tmp_path / "probes.jsonl", [RECORD, RECORD.__class__(**{**RECORD.__dict__, "id": "p2", "split": "train"})]
    )
    assert read_probes(path) == {"p1": RECORD, "p2": read_probes(path)["p2"]}
    assert list(read_probes(path, "eval")) == ["p1"]
    row = json.loads(path.read_text().splitlines()[0])
    assert list(row) == ["id", "split", "kind", "problem", "ground_truth", "probe", "baseline", "baseline_accuracy",
                         "baseline_logp"]  # fmt: skip
    assert row["baseline"] == [{"text": RECORD.first_attempt.text, "tokens": 12, "truncated": False, "correct": True,
                                "completed": True}]  # fmt: skip


def test_a_record_that_does_not_fit_is_named(tmp_path):
    path = tmp_path / "probes.jsonl"
    path.write_text(json.dumps(RECORD.to_dict()) + "\n" + json.dumps({"id": "x", "problem": "?"}) + "\n")
    with pytest.raises(InputError, match=r"probes\.jsonl: record 2: not a probe record .*re-run the probe stage"):
        read_probes(path)
