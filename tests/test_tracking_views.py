"""What people read in MLflow (issue 14 items 3 and 4): the teaching traces table built from the evaluation's
outcomes and probes, the headline metrics of a pipeline run, and the experiment's view in the UI."""

from __future__ import annotations

import json

import pytest

from atlas.core.errors import InputError
from atlas.ops import results, traces, tracking
from atlas.teaching.records import BaselineSample, ProbeRecord


def _probe(pid: str, attempt: str, correct: bool) -> ProbeRecord:
    sample = BaselineSample(text=attempt, tokens=5, truncated=False, correct=correct, completed=True)
    return ProbeRecord(
        id=pid, split="eval", kind="add", problem=f"What is {pid}?", ground_truth="7",
        probe="I will add the numbers.", baseline=(sample, sample), baseline_accuracy=float(correct),
        baseline_logp=None,
    )  # fmt: skip


def _outcome(teacher: str, pid: str, teaching: str, taught: list[bool], **extra) -> dict:
    return {
        "teacher": teacher, "id": pid, "kind": "add", "baseline_correct": [False, True], "taught_correct": taught,
        "baseline_completed": [True, True], "taught_completed": [True] * len(taught), "baseline_tokens": [5, 5],
        "taught_tokens": [6] * len(taught), "teaching_tokens": len(teaching.split()), "leaked": False,
        "teaching": teaching, "taught_response": f"answer of {teacher}", **extra,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("teaching", "taught", "silent", "taught_correct", "taught_accuracy"),
    [
        ("Check the units first.", [True, False], False, True, 0.5),
        ("", [False, False], True, False, 0.0),
        ("  ", [False, True], True, False, 0.5),
    ],
)
def test_trace_rows_join_outcome_and_probe_text(teaching, taught, silent, taught_correct, taught_accuracy):
    rows = traces.trace_rows([_outcome("grpo", "p1", teaching, taught, rim_score=0.4)], {"p1": _probe("p1", "7", True)})
    [row] = rows
    assert list(row) == list(traces.COLUMNS)
    assert row["problem"] == "What is p1?" and row["ground_truth"] == "7"
    assert row["student_attempt"] == "7" and row["student_correct"] is True
    assert row["probe"] == "I will add the numbers." and row["guidance"] == teaching
    assert row["taught_answer"] == "answer of grpo"
    assert (row["silent"], row["taught_correct"], row["taught_accuracy"]) == (silent, taught_correct, taught_accuracy)
    assert row["baseline_accuracy"] == 0.5 and row["rim_score"] == 0.4


def test_trace_rows_without_rim_have_no_score():
    [row] = traces.trace_rows([_outcome("sft", "p1", "x", [True])], {"p1": _probe("p1", "8", False)})
    assert row["rim_score"] is None
    assert (row["rim_rationale"], row["rim_escalated"], row["rim_judges"]) == ("", "", "")


def _judge(score, rationale, escalated=False, reasons=(), error=None) -> dict:
    return {
        "score": score, "uncertainty": 0.1, "rationale": rationale, "escalated": escalated,
        "escalation_reasons": list(reasons), "source": "arbiter" if escalated else "tier1", "error": error,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("judges", "rationale", "escalated", "scores"),
    [
        (
            {"accuracy": _judge(0.9, "The taught answer is right."), "helpfulness": _judge(0.5, "Generic hint.")},
            "accuracy: The taught answer is right. | helpfulness: Generic hint.",
            "no",
            "accuracy=0.90 helpfulness=0.50",
        ),
        (
            {
                "accuracy": _judge(0.2, "Wrong.", escalated=True, reasons=["disagreement", "uncertainty"]),
                "process": _judge(None, "", escalated=True, reasons=["no_valid_sample"], error="arbiter failed"),
            },
            "accuracy: Wrong. | process: arbiter failed",
            "yes: accuracy: disagreement, uncertainty; process: no_valid_sample",
            "accuracy=0.20 process=none",
        ),
    ],
)
def test_trace_rows_show_the_rim_judgment_as_text(judges, rationale, escalated, scores):
    """Issue 14 item 3: each judge's rationale, whether it escalated and why, and its score, as text columns."""
    rim = {"escalated": escalated != "no", "error": None, "judges": judges}
    outcome = _outcome("grpo", "p1", "hint", [True], rim_score=0.4, rim=rim)
    [row] = traces.trace_rows([outcome], {"p1": _probe("p1", "7", True)})
    assert (row["rim_rationale"], row["rim_escalated"], row["rim_judges"]) == (rationale, escalated, scores)


def test_an_outcome_without_its_probe_record_is_named():
    with pytest.raises(InputError, match=r"outcome row 2 \(teacher 'sft'\): problem 'p2' has no probe record"):
        traces.trace_rows(
            [_outcome("sft", "p1", "", [True]), _outcome("sft", "p2", "", [True])], {"p1": _probe("p1", "7", True)}
        )


def test_traces_frame_keeps_the_column_order(tmp_path):
    from atlas.core.io import write_jsonl
    from atlas.teaching.records import write_probes

    write_jsonl(tmp_path / "o.jsonl", [_outcome("grpo", "p1", "hint", [True]), _outcome("none", "p1", "", [False])])
    write_probes(tmp_path / "p.jsonl", [_probe("p1", "7", True)])
    frame = traces.traces_frame(traces.read_traces(tmp_path / "o.jsonl", tmp_path / "p.jsonl"))
    assert list(frame.columns) == list(traces.COLUMNS) and list(frame["teacher"]) == ["grpo", "none"]


EVAL = {
    "teachers": {
        "grpo": {"overall": {"taught_accuracy": 0.6, "accuracy_delta": 0.1, "accuracy_delta_ci_low": -0.05,
                             "accuracy_delta_ci_high": 0.2, "non_degradation_rate": 1.0, "completion_rate_taught": 0.9,
                             "teaching_tokens": 12.5, "baseline_accuracy": 0.5, "leak_rate": 0.0,
                             "logp_gold_delta": None}},
        "none": {"overall": {"taught_accuracy": 0.5, "accuracy_delta": 0.0}},
    },
    "paired": {"grpo-sft": {"difference": 0.05, "ci_low": -0.1, "ci_high": 0.2, "wins": 2, "losses": 1}},
}  # fmt: skip


def test_headline_metrics_per_teacher_and_paired():
    head = results.headline_metrics(EVAL)
    assert head["grpo"] == {k: EVAL["teachers"]["grpo"]["overall"][k] for k in results.HEADLINE_KEYS}
    assert head["none"] == {"taught_accuracy": 0.5, "accuracy_delta": 0.0}
    assert head["paired"]["grpo-sft"]["difference"] == 0.05


def test_log_headline_into_the_pipeline_run_not_the_active_one(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    mlflow = tracking.get_mlflow()
    exp = tracking.experiment_id("atlas")
    parent = MlflowClient().create_run(exp).info.run_id
    (tmp_path / "eval.json").write_text(json.dumps(EVAL), encoding="utf-8")
    with mlflow.start_run(experiment_id=exp) as other:
        logged = results.log_headline(parent, tmp_path / "eval.json")
    metrics = MlflowClient().get_run(parent).data.metrics
    assert metrics["grpo.taught_accuracy"] == 0.6 and metrics["grpo.accuracy_delta_ci_low"] == -0.05
    assert metrics["paired.grpo-sft.difference"] == 0.05 and metrics["paired.grpo-sft.ci_high"] == 0.2
    assert "grpo.leak_rate" not in metrics and set(logged) == set(metrics)
    assert not MlflowClient().get_run(other.info.run_id).data.metrics


def test_log_headline_of_a_missing_report_warns(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    tracking.get_mlflow()
    with caplog.at_level("WARNING"):
        assert results.log_headline("run-id", tmp_path / "eval.json") == {}
    assert "eval.json is missing" in caplog.text


def test_the_experiment_opens_in_the_model_training_view(tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.chdir(tmp_path)
    mlflow = tracking.get_mlflow()
    client = MlflowClient()
    new = tracking.experiment_id("fresh")
    assert client.get_experiment(new).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    old = mlflow.create_experiment("made-before")  # an experiment made before the tag existed gets it
    assert tracking.experiment_id("made-before") == old
    assert client.get_experiment(old).tags[tracking.EXPERIMENT_KIND_TAG] == "custom_model_development"
    chosen = mlflow.create_experiment("chosen", tags={tracking.EXPERIMENT_KIND_TAG: "finetuning"})
    tracking.experiment_id("chosen")
    assert client.get_experiment(chosen).tags[tracking.EXPERIMENT_KIND_TAG] == "finetuning"


def test_headline_keys_are_metric_keys():
    """The pipeline run's headline is a subset of what `teacher_metrics` computes (a renamed metric fails here)."""
    from atlas.teaching.metrics import METRIC_KEYS

    assert set(results.HEADLINE_KEYS) <= set(METRIC_KEYS)
