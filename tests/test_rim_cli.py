"""`atlas rim score` (cache makes the second run free, failures are reported) and `atlas rim bench` (RB2 protocol)."""

from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

import pytest

from atlas.cli.rim import add_parser
from atlas.core.errors import InputError
from atlas.rim.backends.scripted import judgment_json
from atlas.rim.rewardbench import best_of_n_credit, load_rb2, ties_score
from tests.rim_helpers import GOOD_ROW, FakeJudgeServer, Reply

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "rim_config.yaml")


def rim(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="atlas")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["rim", *argv])
    return args.func(args)


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def summary(out: str) -> dict[str, str]:
    last = out.strip().splitlines()[-1]
    return dict(re.findall(r"(\w+)=(\S+)", last))


def test_score_twice_second_run_is_served_from_cache(tmp_path, capsys):
    rows = [GOOD_ROW, GOOD_ROW | {"taught_response": "7 \\boxed{7}", "baseline_accuracy": 1.0}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    common = ["--input", str(source), "--config", CONFIG, "--set", f"cache.path={tmp_path / 'cache.sqlite'}"]
    assert rim("score", *common, "--output", str(tmp_path / "a.jsonl")) == 0
    first = summary(capsys.readouterr().out)
    assert rim("score", *common, "--output", str(tmp_path / "b.jsonl")) == 0
    second = summary(capsys.readouterr().out)
    assert int(first["calls"]) == 2 * 4 * 3 and int(first["cache_hits"]) == 0
    assert int(second["calls"]) == 0 and int(second["cache_hits"]) == 2 * 4 * 3
    assert first["rows"] == second["rows"] == "2"
    a = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text().splitlines()]
    b = [json.loads(line) for line in (tmp_path / "b.jsonl").read_text().splitlines()]
    assert [r["score"] for r in a] == [r["score"] for r in b] and a[0]["score"] > a[1]["score"]
    assert a[0]["row"] == 1 and a[0]["question"] == GOOD_ROW["question"] and a[0]["escalated"] is False
    assert set(a[0]["judges"]) == {"accuracy", "helpfulness", "process", "diagnostic"}
    assert a[0]["judges"]["accuracy"]["calls"][0]["cached"] is False
    assert b[0]["judges"]["accuracy"]["calls"][0]["cached"] is True


def test_unscorable_rows_are_null_and_fail_the_command(tmp_path, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", [GOOD_ROW, GOOD_ROW | {"ground_truth": None}])
    code = rim(
        "score",
        "--input",
        str(source),
        "--output",
        str(tmp_path / "out.jsonl"),
        "--config",
        CONFIG,
        "--set",
        "cache.enabled=false",
        "--set",
        "active_judges={accuracy: true}",
        "--no-audit",
    )
    captured = capsys.readouterr()
    assert code == 1
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out[0]["score"] > 0.9 and out[1]["score"] is None
    assert "ground truth" in out[1]["error"] and "calls" not in out[1]["judges"]["accuracy"]
    assert "row 2: not scored" in captured.err
    assert summary(captured.out)["failed"] == "1"


def test_bad_input_names_file_row_and_field(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [GOOD_ROW, "{not json", {"question": "", "taught_response": 3}])
    with pytest.raises(InputError) as err:
        rim("score", "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--config", CONFIG)
    lines = str(err.value).splitlines()
    assert f"{source}: row 2: not valid JSON" in lines[0]
    assert f"{source}: row 3: field 'question': missing or empty" in lines
    assert f"{source}: row 3: field 'taught_response': missing or empty" in lines
    assert not (tmp_path / "o.jsonl").exists()


def test_through_the_atlas_cli(tmp_path, capsys):
    from atlas.cli import main

    source = write_jsonl(tmp_path / "in.jsonl", [GOOD_ROW])
    code = main(["rim", "score", "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--config", CONFIG,
                 "--set", f"cache.path={tmp_path / 'c.sqlite'}"])  # fmt: skip
    assert code == 0 and "rows=1 scored=1" in capsys.readouterr().out


# ------------------------------------------------------------------ RewardBench 2


def item(item_id, subset, chosen, rejected):
    return {"id": item_id, "prompt": f"prompt {item_id}", "chosen": chosen, "rejected": rejected, "subset": subset,
            "num_correct": len(chosen), "num_incorrect": len(rejected)}  # fmt: skip


RB2 = [
    item("m1", "Math", ["CORRECT"], ["no 1", "no 2", "no 3"]),  # credit 1
    item("m2", "Math", ["no"], ["CORRECT", "no 2", "no 3"]),  # credit 0
    item("m3", "Math", ["CORRECT a"], ["CORRECT b", "no 2", "no 3"]),  # two at the top: 1/2
    item("f1", "Focus", ["CORRECT"], ["no 1", "no 2", "no 3"]),  # 1
    item("f2", "Focus", ["CORRECT"], ["CORRECT 1", "CORRECT 2", "CORRECT 3"]),  # four at the top: 1/4
    item("ref:1", "Ties", ["CORRECT A"], ["wrong B", "wrong C"]),
    item("tied:1", "Ties", ["CORRECT x", "CORRECT y"], ["wrong z"]),
    item("ref:2", "Ties", ["chosen but rated low"], ["CORRECT impostor"]),
]
EXPECTED = {"Math": 0.5, "Focus": 0.625, "Ties": 0.3 * 1.0 + 0.3 * 0.5 + 0.2 + 0.2}


def rating_server():
    def rate(request):
        response = re.search(r"<<BEGIN response \w+>>\n(.*?)\n<<END response", request["prompt"], re.S).group(1)
        return Reply(text=judgment_json(0.9 if "CORRECT" in response else 0.1, 0.05))

    return FakeJudgeServer("openai", default=rate)


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_bench(tmp_path, capsys, fmt):
    data = tmp_path / f"rb2.{fmt}"
    if fmt == "jsonl":
        write_jsonl(data, RB2)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(RB2), data)
    with rating_server() as server:
        model = f"{{provider: openai, model: rater, base_url: '{server.url}', retry: {{attempts: 1}}}}"
        code = rim("bench", "--data", str(data), "--config", CONFIG, "--output", str(tmp_path / "report.json"),
                   "--set", f"small_model={model}", "--set", f"large_model={model}", "--set", "temperatures=[0.5]",
                   "--set", "cache.enabled=false", "--seed", "3")  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    report = json.loads((tmp_path / "report.json").read_text())
    for name, accuracy in EXPECTED.items():
        assert report["subsets"][name]["accuracy"] == pytest.approx(accuracy), name
    assert report["overall"] == pytest.approx(sum(EXPECTED.values()) / 3)
    assert report["ratings"] == 28 == len(server.requests) and report["failed_ratings"] == 0
    assert report["escalation_rate"] == 0.0 and report["usage"]["calls"] == 28
    orders = {r["id"]: r["order"] for r in report["per_item"]}
    assert sorted(orders["m1"]) == [0, 1, 2, 3] and report["seed"] == 3
    assert f"overall={report['overall']:.4f}" in out.splitlines()[-1] and "calls=28" in out


def test_bench_refuses_the_offline_judge(tmp_path):
    from atlas.config import ConfigError

    data = write_jsonl(tmp_path / "rb2.jsonl", RB2[:1])
    with pytest.raises(ConfigError, match="needs a model judge"):
        rim("bench", "--data", str(data), "--config", CONFIG)


def test_candidate_order_is_seeded(tmp_path):
    import asyncio

    from atlas.rim.rewardbench import RB2Item, run_rewardbench
    from tests.rim_helpers import constant_backend, make_reward

    items = [RB2Item(f"i{i}", "p", ("c",), ("r1", "r2", "r3"), "Math") for i in range(6)]

    def orders(seed):
        reward = make_reward(tmp_path, constant_backend(), **{"cache.enabled": False})
        report = asyncio.run(run_rewardbench(reward, items, seed=seed))
        return [r["order"] for r in report["per_item"]]

    assert orders(1) == orders(1) != orders(2)


@pytest.mark.parametrize(
    ("scores", "num_chosen", "credit"),
    [
        ([0.9, 0.1, 0.2, 0.3], 1, 1.0),
        ([0.5, 0.5, 0.2, 0.3], 1, 0.5),
        ([0.5, 0.5, 0.5, 0.5], 1, 0.25),
        ([0.4, 0.5, 0.2, 0.3], 1, 0.0),
        ([None, 0.1, 0.1, 0.1], 1, 0.0),  # a failed rating of the chosen answer counts against the judge
        ([0.9, None, 0.1, 0.1], 1, 0.0),  # so does a failed rating of a rejected one
        ([0.9, 0.9, 0.9, 0.1], 2, 2 / 3),
    ],
)
def test_best_of_n_credit(scores, num_chosen, credit):
    assert best_of_n_credit(scores, num_chosen) == pytest.approx(credit)


def test_ties_formula_by_hand():
    out = ties_score([("ref:7", [0.9, 0.2, 0.3], 1), ("tied:7", [0.8, 0.6, 0.1, 0.3], 2)])
    # ref: correct 0.9 > best incorrect 0.3 (margin 0.6); tied: worst correct 0.6 > 0.3 (margin 0.3), spread 0.2
    assert out["ref_accuracy"] == out["tied_accuracy"] == 1.0
    assert out["correctness_preferred"] == out["correctness_preferred_hard"] == 1.0
    assert out["correctness_margin_score"] == pytest.approx(math.tanh(0.3 / 0.2 - 1))
    assert out["score"] == pytest.approx(1.0 + 0.01 * math.tanh(0.5))
    lone = ties_score([("tied:3", [0.2, 0.9, 0.5], 2)])  # no matching ref prompt: only tied accuracy counts
    assert lone["tied_accuracy"] == 0.0 and lone["score"] == 0.0


def test_rb2_schema_errors(tmp_path):
    bad = write_jsonl(
        tmp_path / "bad.jsonl",
        [
            item("x", "Math", [], ["r"]),
            {"id": "t", "prompt": "p", "chosen": ["a"], "rejected": ["b"], "subset": "Ties"},
            {"prompt": "p", "chosen": "a", "rejected": ["b"], "subset": "Math"},
        ],
    )
    with pytest.raises(InputError) as err:
        load_rb2(bad)
    text = str(err.value)
    assert "row 1: field 'chosen': must be a non-empty list of strings" in text
    assert "row 2: field 'id': Ties ids look like 'ref:<n>' or 'tied:<n>'" in text
    assert "row 3: field 'id': missing" in text and "row 3: field 'chosen'" in text


# ------------------------------------------------------------------ issue 13 item 13: the cache and partial panels

GEMINI_KEY_ENV = "ATLAS_TEST_GEMINI_KEY"


def gemini_config(tmp_path: Path, url: str, name: str = "rim.yaml") -> Path:
    model = {
        "provider": "gemini",
        "api_key_env": GEMINI_KEY_ENV,
        "base_url": url,
        "timeout_seconds": 2.0,
        "retry": {"attempts": 4, "backoff_seconds": 0.01, "max_backoff_seconds": 0.02, "invalid_json_retries": 2},
    }
    config = {
        "rim": {
            "small_model": model | {"model": "gemini-2.5-flash"},
            "large_model": model | {"model": "gemini-2.5-pro"},
            "cache": {"path": str(tmp_path / "cache.sqlite")},
        }
    }
    path = tmp_path / name
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def flaky_server():
    """A Gemini-compatible server on 127.0.0.1 whose first answer to each request is, in turn, a 429, a 503, a reply
    that is not JSON, or a good judgment; retries and re-asks then get good judgments."""
    seen: dict[tuple[str, float], int] = {}
    faults = [
        Reply(status=429, payload={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "quota"}}),
        Reply(status=503, payload={"error": {"code": 503, "status": "UNAVAILABLE", "message": "busy"}}),
        Reply(text="this is not JSON {"),
        None,
    ]

    def answer(request):
        key = (request["prompt"], request["body"]["generationConfig"]["temperature"])
        seen[key] = seen.get(key, 0) + 1
        reask = "Your previous reply could not be used" in request["prompt"]
        fault = faults[len(seen) % len(faults)] if seen[key] == 1 and not reask else None
        return fault or Reply(text=judgment_json(0.8, 0.05, "fake server"))

    return FakeJudgeServer("gemini", default=answer)


def test_cache_survives_faults_and_is_keyed_by_the_endpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(GEMINI_KEY_ENV, "dummy-key-123456")
    rows = [GOOD_ROW, GOOD_ROW | {"taught_response": "7 \\boxed{7}", "baseline_accuracy": 1.0}]
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    with flaky_server() as server:
        config = gemini_config(tmp_path, server.url)
        args = ["--input", str(source), "--config", str(config), "--no-audit"]
        assert rim("score", *args, "--output", str(tmp_path / "a.jsonl")) == 0
        first = summary(capsys.readouterr().out)
        asked = len(server.requests)
        assert asked == int(first["calls"]) > 2 * 4 * 3  # retries and re-asks happened
        assert rim("score", *args, "--output", str(tmp_path / "b.jsonl")) == 0
        second = summary(capsys.readouterr().out)
        assert len(server.requests) == asked  # the second run asked the server nothing
        assert int(second["calls"]) == 0 and int(second["cache_hits"]) == 2 * 4 * 3
        assert int(first["retries"]) > 0 and first["failed"] == first["partial"] == "0"
    # the same judges on another server: nothing of the first server's cache is served
    with FakeJudgeServer("gemini", default=Reply(text=judgment_json(0.3, 0.05, "other server"))) as other:
        config = gemini_config(tmp_path, other.url, name="other.yaml")
        args = ["--input", str(source), "--config", str(config), "--no-audit"]
        assert rim("score", *args, "--output", str(tmp_path / "c.jsonl")) == 0
        third = summary(capsys.readouterr().out)
        assert int(third["cache_hits"]) == 0 and len(other.requests) == 2 * 4 * 3
    scored = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert all(r["score"] == pytest.approx(0.3) for r in scored)


def test_a_partial_panel_is_reported_as_partial(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(GEMINI_KEY_ENV, "dummy-key-123456")

    def only_accuracy(request):
        if "the accuracy judge" in request["prompt"]:
            return Reply(text=judgment_json(0.9, 0.05))
        return Reply(status=400, payload={"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "no"}})

    source = write_jsonl(tmp_path / "in.jsonl", [GOOD_ROW])
    with FakeJudgeServer("gemini", default=only_accuracy) as server:
        config = gemini_config(tmp_path, server.url)
        code = rim("score", "--input", str(source), "--output", str(tmp_path / "o.jsonl"), "--config", str(config))
    captured = capsys.readouterr()
    [row] = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert row["score"] == pytest.approx(0.9) and row["partial"] is True
    assert row["judges_failed"] == 3 and row["judges_total"] == 4
    assert row["error"].startswith("partial panel: 3 of 4 judges failed (helpfulness: ")
    counts = summary(captured.out)
    assert (counts["scored"], counts["partial"], counts["failed"]) == ("0", "1", "0")
    assert "row 1: partial panel: 3 of 4 judges failed" in captured.err and code == 1
