"""The GRPO reward callables over one rollout: what each completion earns, from its measured outcome."""

from __future__ import annotations

import pytest

from atlas.config import load_config
from atlas.training.rollout import make_reward_funcs


class FixedRollout:
    """Outcomes as if the student had already answered: one dict per completion, in order."""

    def __init__(self, outcomes: list[dict]):
        self._outcomes = outcomes

    def outcomes(self, completions, ids, trainer_state=None):
        assert len(completions) == len(ids) == len(self._outcomes)
        return self._outcomes


def _outcome(baseline: float, taught: bool, logp_gain: float, teaching: str = "Add them.", leaked: bool = False):
    return {
        "baseline_accuracy": baseline,
        "taught_correct": taught,
        "teaching": teaching,
        "teaching_tokens": len(teaching.split()),
        "leaked": leaked,
        "taught_logp": -10.0 + logp_gain,
        "baseline_logp": -10.0,
    }


@pytest.mark.parametrize(
    ("baseline", "logp_gain", "expected"),
    [
        (0.0, 2.0, 2.0),  # the student was wrong: the full gain in log p(gold)
        (0.5, 2.0, 1.0),  # wrong half the time: half of it
        (1.0, 2.0, 0.0),  # already right alone: raising p(gold) is worth nothing
        (0.0, 9.0, 5.0),  # clipped
        (0.0, -3.0, -3.0),  # guidance that makes the answer less likely costs
    ],
)
def test_likelihood_reward_counts_where_the_student_was_wrong(project, baseline, logp_gain, expected):
    cfg = load_config(overrides=["reward.teaching_weight=0", "reward.likelihood_weight=1", "reward.rim_weight=0"])
    funcs, weights = make_reward_funcs(cfg, FixedRollout([_outcome(baseline, True, logp_gain)]))
    assert [f.__name__ for f in funcs] == ["likelihood"] and weights == [1.0]
    assert funcs[0](["p"], ["c"], id=["x"]) == [pytest.approx(expected)]


def test_a_leak_costs_the_leak_penalty_in_every_reward(project):
    cfg = load_config(overrides=["reward.teaching_weight=1", "reward.likelihood_weight=1", "reward.rim_weight=0"])
    funcs, _ = make_reward_funcs(cfg, FixedRollout([_outcome(0.0, True, 3.0, teaching="It is 7.", leaked=True)]))
    assert [f(["p"], ["c"], id=["x"]) for f in funcs] == [[cfg.reward.leak_penalty]] * 2


def test_silence_on_a_solved_problem_beats_teaching_that_breaks_it(project):
    cfg = load_config(overrides=["reward.teaching_weight=1", "reward.likelihood_weight=0", "reward.rim_weight=0"])
    silent, broken = _outcome(1.0, True, 0.0, teaching=""), _outcome(1.0, False, 1.0)
    (teaching,), _ = make_reward_funcs(cfg, FixedRollout([silent, broken]))
    quiet, harm = teaching(["p", "p"], ["a", "b"], id=["x", "x"])
    assert quiet > 0 > harm


def test_rewards_are_callable_objects_with_stable_names_that_pickle(project):
    """TRL's convention for parameterised rewards: a fixed `__name__` (TRL logs `rewards/<name>`), extra columns
    ignored, and picklable (TRL's async and multi-process paths pickle them)."""
    import pickle

    cfg = load_config(overrides=["reward.teaching_weight=1", "reward.likelihood_weight=1", "reward.rim_weight=0"])
    outcomes = [_outcome(0.0, True, 2.0), _outcome(1.0, False, 0.5)]
    funcs, _ = make_reward_funcs(cfg, FixedRollout(outcomes))
    assert [f.__name__ for f in funcs] == ["teaching", "likelihood"]
    extra = {"trainer_state": object(), "completion_ids": [[1], [2]], "log_metric": None}
    for func in funcs:
        copy = pickle.loads(pickle.dumps(func))
        assert copy.__name__ == func.__name__
        assert copy(["p", "q"], ["a", "b"], id=["x", "y"], **extra) == func(["p", "q"], ["a", "b"], id=["x", "y"])


def test_the_rim_reward_is_async_and_named_rim(project):
    import inspect

    cfg = load_config(overrides=["reward.teaching_weight=0", "reward.likelihood_weight=0", "reward.rim_weight=1"])
    (rim,), weights = make_reward_funcs(cfg, FixedRollout([]))
    assert rim.__name__ == "rim" and weights == [1.0] and inspect.iscoroutinefunction(type(rim).__call__)


def _probe_record(pid: str):
    from atlas.teaching.records import BaselineSample, ProbeRecord

    sample = BaselineSample(text="3 + 4 = 7", tokens=5, truncated=False, correct=False, completed=True)
    return ProbeRecord(
        id=pid, split="train", kind="mul", problem="Tom has 3 bags of 4 apples. How many apples?", ground_truth="12",
        probe="I will add 3 and 4.", baseline=(sample,), baseline_accuracy=0.0, baseline_logp=None,
    )  # fmt: skip


def _rim_reward(tmp_path, uncertainty: float, taught: str = "4 + 4 + 4 = 12. \\boxed{12}"):
    """`RolloutRIMReward` over a scripted judge panel: every judgment says 0.8 with the given uncertainty (above the
    config's uncertainty_threshold of 0.3, every judge escalates to the arbiter)."""
    from atlas.training.rollout import RolloutRIMReward
    from tests.rim_helpers import constant_backend, make_reward

    outcome = _outcome(0.0, True, 0.0, teaching="Think of repeated addition.") | {"taught_response": taught}
    rollout = FixedRollout([outcome, dict(outcome)])
    rollout.probes = {"x": _probe_record("x"), "y": _probe_record("y")}
    judge = make_reward(tmp_path, constant_backend(0.8, uncertainty), **{"cache.enabled": False})
    return RolloutRIMReward(rollout, judge)


@pytest.mark.parametrize(("uncertainty", "escalation_rate", "escalated"), [(0.05, 0.0, "no"), (0.9, 1.0, "yes: ")])
def test_the_rim_reward_logs_its_explanations_and_escalation_rate(project, tmp_path, uncertainty, escalation_rate,
                                                                   escalated):  # fmt: skip
    """Issue 14 item 3: GRPO logs the RIM explanations beside `rim_rewards/*` and the escalation rate."""
    import asyncio

    rim = _rim_reward(tmp_path, uncertainty)
    metrics, extra = {}, {}
    scores = asyncio.run(
        rim(["p", "q"], ["a", "b"], id=["x", "y"], log_metric=metrics.__setitem__, log_extra=extra.__setitem__)
    )
    assert scores == [pytest.approx(0.8)] * 2
    assert metrics["escalation_rate"] == escalation_rate and metrics["rim_rewards/accuracy"] == pytest.approx(0.8)
    others = set(metrics) - {"escalation_rate"} - {m for m in metrics if m.startswith("rim_rewards/")}
    assert others and all(m.startswith("rim/") for m in others), others  # `rim/calls`, not a bare `calls`
    assert set(extra) == {"rim_rationale", "rim_escalated", "rim_judges"} and all(len(v) == 2 for v in extra.values())
    judges = rim.judge.config.enabled_judges()
    assert all(f"{name}: scripted judgment" in text for text in extra["rim_rationale"] for name in judges)
    assert all(text.startswith(escalated) for text in extra["rim_escalated"])
    if escalation_rate:
        assert "uncertainty" in extra["rim_escalated"][0]
    assert extra["rim_judges"][0] == " ".join(f"{name}=0.80" for name in judges)
    rows = rim.drain()
    assert [r["id"] for r in rows] == ["x", "y"] and rim.drain() == []
    assert (
        rows[0]["guidance"] == "Think of repeated addition." and rows[0]["rim_rationale"] == extra["rim_rationale"][0]
    )


def test_the_rim_explanations_land_in_the_grpo_run_per_logging_step(project, tmp_path):
    """The explanations of each logging step are appended, with the step, to the MLflow table of the active run."""
    import asyncio
    import json

    import mlflow
    from transformers import TrainerControl, TrainerState, TrainingArguments

    from atlas.training.callbacks import MlflowRimExplanationsCallback

    rim = _rim_reward(tmp_path, 0.9)
    callback = MlflowRimExplanationsCallback(rim)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), report_to=[])
    with mlflow.start_run() as run:
        for step in (1, 2):
            asyncio.run(rim(["p", "q"], ["a", "b"], id=["x", "y"]))
            callback.on_log(args, TrainerState(global_step=step), TrainerControl(), logs={"loss": 0.0})
        callback.on_log(args, TrainerState(global_step=3), TrainerControl(), logs={"loss": 0.0})  # nothing new
    path = mlflow.MlflowClient().download_artifacts(run.info.run_id, "grpo/rim_explanations.json", str(tmp_path))
    table = json.loads(open(path).read())  # noqa: SIM115
    rows = [dict(zip(table["columns"], values, strict=True)) for values in table["data"]]
    assert [(r["step"], r["id"]) for r in rows] == [(1, "x"), (1, "y"), (2, "x"), (2, "y")]
    assert all(r["rim_escalated"].startswith("yes: ") and "scripted judgment" in r["rim_rationale"] for r in rows)
