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
