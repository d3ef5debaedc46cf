"""Ingest: every source (synthetic, hub layout directory, single jsonl/parquet file, hub id, incoming directory) maps
onto the same normalized records; every kind of bad input is rejected with file, line and field, and leaves the
previous records untouched. No network: the hub is a local copy behind a monkeypatched download function."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from atlas.config import build_config
from atlas.core import paths
from atlas.core.errors import InputError
from atlas.data import sources
from atlas.data.schema import RECORD_KEYS, stable_id
from atlas.stages.ingest import run as ingest

SFT_ROWS = [
    {
        "problem_text": "Tom has 3 apples and buys 4 more. How many apples does he have?",
        "student_approach": "I subtract 4 from 3.",
        "teacher_diagnosis": "Buying more adds apples.",
        "teacher_teaching": "Buying adds: the calculation is 3 + 4.",
    },
    {
        "problem_text": "What is the area of a 5 by 6 rectangle?",
        "student_approach": "I add the sides.",
        "teacher_diagnosis": "Area multiplies the sides.",
        "teacher_teaching": "Multiply the length by the width.",
    },
]
RL_ROWS = [
    {"prompt": "Tom has 3 apples and buys 4 more. How many apples does he have?", "ground_truth": "7"},
    {"prompt": "Solve for x: 2x + 3 = 11.", "ground_truth": "x = 4"},
    {"prompt": "What is one half plus one third?", "ground_truth": "\\frac{5}{6}"},
]


def config(**data):
    return build_config({"data": data})


def write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_records() -> list[dict]:
    return [json.loads(line) for line in paths.RECORDS.read_text(encoding="utf-8").splitlines()]


def hub_layout(root: Path) -> Path:
    write_jsonl(root / "training/sft.jsonl", SFT_ROWS)
    write_jsonl(root / "training/rl.jsonl", RL_ROWS)
    return root


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_synthetic_ingest_writes_sorted_normalized_records_deterministically(workdir):
    cfg = config(synthetic={"n": 24, "seed": 5})
    summary = ingest(cfg)
    first = paths.RECORDS.read_bytes()
    records = read_records()
    assert summary["rows"] == len(records) == 24 and summary["by_source"] == {"synthetic": 24}
    assert all(list(r) == list(RECORD_KEYS) for r in records)
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert ingest(cfg)["content_hash"] == summary["content_hash"] and paths.RECORDS.read_bytes() == first


def test_hub_layout_directory_merges_the_sft_and_rl_rows_of_one_problem(workdir):
    summary = ingest(config(), source=str(hub_layout(workdir / "copy")))
    records = {r["problem"]: r for r in read_records()}
    assert summary["rows"] == 4 and summary["merged"] == 1
    tom = records[RL_ROWS[0]["prompt"]]
    assert tom["ground_truth"] == "7" and tom["teaching"] == SFT_ROWS[0]["teacher_teaching"]
    assert tom["approach"] == SFT_ROWS[0]["student_approach"] and tom["diagnosis"] == SFT_ROWS[0]["teacher_diagnosis"]
    area = records[SFT_ROWS[1]["problem_text"]]
    assert area["ground_truth"] is None and area["teaching"] and area["kind"] == "unknown"
    assert all(r["source"] == "local" and r["split"] is None for r in records.values())
    assert tom["id"] == stable_id(tom["problem"])


def test_directory_single_jsonl_and_parquet_give_the_same_records(workdir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    ingest(config(), source=str(hub_layout(workdir / "copy")))
    from_dir = read_records()
    single = write_jsonl(workdir / "all.jsonl", SFT_ROWS + RL_ROWS)
    ingest(config(), source=str(single))
    assert read_records() == from_dir
    columns = sorted({key for row in SFT_ROWS + RL_ROWS for key in row})
    pq.write_table(
        pa.Table.from_pylist([{k: r.get(k) for k in columns} for r in SFT_ROWS + RL_ROWS]), workdir / "all.parquet"
    )
    ingest(config(), source=str(workdir / "all.parquet"))
    assert read_records() == from_dir


def test_hub_id_goes_through_the_download_function_with_the_revision_pin(workdir, monkeypatch):
    snapshot = hub_layout(workdir / "hub/snapshots/0123abcd")
    calls = []

    def fake_download(repo_id, filename, revision):
        calls.append((repo_id, filename, revision))
        return snapshot / filename

    monkeypatch.setattr(sources, "hub_download", fake_download)
    summary = ingest(config(revision="0123abcd"), source="Arc-Intelligence/Arc-ATLAS-Teach-v0")
    assert calls == [("Arc-Intelligence/Arc-ATLAS-Teach-v0", f, "0123abcd") for f in sources.HUB_FILES]
    assert summary["revision"] == "0123abcd" and summary["source_type"] == "hub"
    records = read_records()
    assert len(records) == 4 and {r["source"] for r in records} == {"hub"}


def test_unreachable_hub_fails_with_a_message_about_local_copies(workdir, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(repo_id, filename, revision):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(sources, "hub_download", offline)
    with pytest.raises(InputError, match=r"Arc-Intelligence/Arc-ATLAS-Teach-v0.*--source DIR"):
        ingest(config(), source="Arc-Intelligence/Arc-ATLAS-Teach-v0")
    assert not paths.RECORDS.exists()


def test_real_hub_client_fails_fast_when_offline(workdir, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(workdir / "hf-cache"))
    start = time.monotonic()
    with pytest.raises(InputError, match="local copy"):
        ingest(config(), source="someone/not-a-cached-dataset")
    assert time.monotonic() - start < 10


def test_incoming_rows_are_merged(workdir):
    write_jsonl(workdir / "data/incoming/batch1.jsonl", [{"question": "What is 6 times 7?", "answer": 42}])
    summary = ingest(config(synthetic={"n": 8}))
    assert summary["by_source"] == {"incoming": 1, "synthetic": 8}
    added = [r for r in read_records() if r["source"] == "incoming"]
    assert added[0]["problem"] == "What is 6 times 7?" and added[0]["ground_truth"] == "42"


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"question": "Q?", "answer": 12}, {"problem": "Q?", "ground_truth": "12"}),
        ({"question": "Q?", "answer": 2.5}, {"ground_truth": "2.5"}),
        ({"problem_text": " Q? ", "solution": "So we get \\boxed{42}."}, {"problem": "Q?", "ground_truth": "42"}),
        ({"id": 17, "prompt": "Q?", "ground_truth": "1/2", "kind": "frac"}, {"id": "17", "kind": "frac"}),
        ({"prompt": "Q?", "ground_truth": "3", "extra": [1, 2]}, {"ground_truth": "3"}),
        ({"problem": "Q?", "teaching": "Think.", "approach": ""}, {"ground_truth": None, "approach": None}),
    ],
)
def test_field_aliases_and_value_types(workdir, row, expected):
    ingest(config(), source=str(write_jsonl(workdir / "rows.jsonl", [row])))
    record = read_records()[0]
    assert {k: record[k] for k in expected} == expected


GOOD = {"prompt": "Q?", "ground_truth": "1"}
GOOD_LINE = json.dumps(GOOD).encode() + b"\n"
BAD_INPUTS = [
    # (name, file name, content (bytes, or rows to write as json lines), expected message pieces)
    ("missing file", "absent.jsonl", None, ["absent.jsonl", "file not found"]),
    ("empty file", "empty.jsonl", b"", ["empty.jsonl", "file is empty"]),
    ("blank lines only", "blank.jsonl", b"\n  \n", ["blank.jsonl", "file is empty"]),
    ("invalid JSON", "broken.jsonl", GOOD_LINE + b'{"prompt": "Q2?",\n', ["line 2", "invalid JSON"]),
    ("not an object", "list.jsonl", GOOD_LINE + b"[1, 2]\n", ["line 2", "JSON object"]),
    ("wrong type", "typed.jsonl", [GOOD, {"prompt": ["Q2?"], "ground_truth": "2"}],
     ["line 2", "field 'prompt'", "wrong type"]),
    ("wrong type (bool)", "bool.jsonl", [{"prompt": "Q?", "ground_truth": True}], ["line 1", "field 'ground_truth'"]),
    ("missing problem", "noproblem.jsonl", [GOOD, {"ground_truth": "2"}],
     ["line 2", "field 'problem'", "missing required field"]),
    ("missing ground truth", "nogt.jsonl", [GOOD, {"prompt": "Q2?"}],
     ["line 2", "field 'ground_truth'", "missing required field"]),
    ("non-UTF-8", "latin1.jsonl", GOOD_LINE + b'{"prompt": "caf\xe9?", "ground_truth": "2"}\n',
     ["line 2", "not valid UTF-8"]),
    ("absurdly long field", "long.jsonl", [GOOD, {"prompt": "x" * 20001, "ground_truth": "2"}],
     ["line 2", "field 'prompt'", "too long"]),
    ("duplicate ids", "dups.jsonl", [{"id": "a", **GOOD}, {"id": "a", "prompt": "Q2?", "ground_truth": "2"}],
     ["line 2", "field 'id'", "duplicate id 'a'", "line 1"]),
    ("unparseable ground truth", "gt.jsonl", [GOOD, {"prompt": "Q2?", "ground_truth": "banana split"}],
     ["line 2", "field 'ground_truth'", "cannot be parsed"]),
    ("unsupported file type", "rows.csv", b"prompt,ground_truth\n", ["rows.csv", "unsupported file type"]),
    ("corrupt parquet", "bad.parquet", b"not parquet at all", ["bad.parquet", "parquet"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "filename", "content", "pieces"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_rejected_naming_file_line_and_field(workdir, name, filename, content, pieces):
    paths.RECORDS.parent.mkdir(parents=True)
    paths.RECORDS.write_text("previous records\n", encoding="utf-8")
    path = workdir / "in" / filename
    if isinstance(content, bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    elif content is not None:
        write_jsonl(path, content)
    with pytest.raises(InputError) as caught:
        ingest(config(), source=str(path))
    message = str(caught.value)
    for piece in pieces:
        assert piece in message, (piece, message)
    assert str(path) in message or filename in message
    assert paths.RECORDS.read_text(encoding="utf-8") == "previous records\n"


def test_every_problem_gets_its_own_line(workdir):
    rows = [{"prompt": "Q?", "ground_truth": "1"}, {"ground_truth": "2"}, {"prompt": 3, "ground_truth": "3"}]
    with pytest.raises(InputError) as caught:
        ingest(config(), source=str(write_jsonl(workdir / "rows.jsonl", rows)))
    lines = str(caught.value).splitlines()
    assert len(lines) == 2 and "line 2" in lines[0] and "line 3" in lines[1]


def test_a_few_content_problems_below_the_threshold_pass_through_for_quarantine(workdir):
    rows = [{"prompt": f"What is {i} + {i}?", "ground_truth": str(2 * i)} for i in range(1, 30)]
    rows.append({"prompt": "Name the capital of France.", "ground_truth": "banana split"})
    summary = ingest(config(max_bad_fraction=0.05), source=str(write_jsonl(workdir / "rows.jsonl", rows)))
    assert summary["rows"] == 30 and summary["bad_rows"] == 1
    with pytest.raises(InputError, match="1 of 30 rows"):
        ingest(config(max_bad_fraction=0.01), source=str(workdir / "rows.jsonl"))


def test_generated_ids_stay_unique_for_repeated_problems(workdir):
    rows = [{"prompt": "Q?", "ground_truth": "1"}, {"prompt": "Q?", "ground_truth": "2"}]
    ingest(config(), source=str(write_jsonl(workdir / "rows.jsonl", rows)))
    ids = [r["id"] for r in read_records()]
    assert sorted(ids) == [stable_id("Q?"), stable_id("Q?") + "-2"]
