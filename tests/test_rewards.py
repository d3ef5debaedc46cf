"""Teaching reward, published variants, likelihood reward and outcome rates (atlas.rewards)."""

from __future__ import annotations

import math

import pytest

from atlas.teaching.rewards import (
    PUBLISHED_VARIANTS,
    efficiency_bonus,
    likelihood_reward,
    outcome,
    outcome_rates,
    teaching_reward,
)

# Default settings (degradation -2, keep-correct 0.5, efficiency weight 1, scale 100); e = 100 / (100 + tokens).
BRANCH_CASES = [
    # (baseline, taught, tokens, expected)
    (False, True, 100, 1.5),  # improved: 1 + 0.5
    (False, True, 0, 2.0),  # improved, empty guidance: 1 + 1
    (False, True, 900, 1.1),  # improved, long guidance: 1 + 0.1
    (True, True, 100, 0.75),  # kept correct: 0.5 * 1.5
    (True, True, 300, 0.625),  # kept correct: 0.5 * 1.25
    (False, False, 100, 0.0),  # kept wrong
    (False, False, 0, 0.0),
    (True, False, 100, -2.0),  # degraded
    (True, False, 0, -2.0),  # degradation is not softened by short guidance
]


@pytest.mark.parametrize(("baseline", "taught", "tokens", "expected"), BRANCH_CASES)
def test_teaching_reward_branches(baseline: bool, taught: bool, tokens: int, expected: float) -> None:
    assert teaching_reward(baseline, taught, tokens) == pytest.approx(expected)


EXPECTATION_CASES = [
    # (baseline accuracy p, taught, tokens, expected) with the default settings, e = 0.5 at 100 tokens
    (0.5, True, 100, 0.5 * 0.75 + 0.5 * 1.5),  # 1.125
    (0.5, False, 100, 0.5 * -2.0 + 0.5 * 0.0),  # -1.0
    (0.25, True, 100, 0.25 * 0.75 + 0.75 * 1.5),  # 1.3125
    (0.75, False, 100, 0.75 * -2.0),  # -1.5
    (1.0, 0.5, 100, 0.5 * 0.75 + 0.5 * -2.0),  # -0.625: taught correctness as a probability
    (0.5, 0.5, 100, 0.25 * (0.75 - 2.0 + 1.5 + 0.0)),  # 0.0625
    (0.0, 0.5, 0, 0.5 * 2.0),  # 1.0
    (1, 1, 100, 0.75),  # ints are probabilities too
]


@pytest.mark.parametrize(("p", "taught", "tokens", "expected"), EXPECTATION_CASES)
def test_teaching_reward_is_the_expectation_over_outcomes(
    p: float, taught: float, tokens: int, expected: float
) -> None:
    assert teaching_reward(p, taught, tokens) == pytest.approx(expected)


@pytest.mark.parametrize("taught", [True, False])
@pytest.mark.parametrize("p", [0.0, 0.2, 0.5, 1.0])
def test_expectation_is_linear_in_baseline_accuracy(p: float, taught: bool) -> None:
    expected = p * teaching_reward(True, taught, 50) + (1 - p) * teaching_reward(False, taught, 50)
    assert teaching_reward(p, taught, 50) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("baseline", "taught"), [(False, True), (True, True), (False, False), (True, False), (0.5, 0.5)]
)
def test_leak_overrides_every_outcome(baseline: float, taught: float) -> None:
    assert teaching_reward(baseline, taught, 10, leaked=True) == -1.0
    assert teaching_reward(baseline, taught, 10, leaked=True, leak_penalty=-3.5) == -3.5


def test_outcomes_are_ordered_with_defaults() -> None:
    improved, kept_correct = teaching_reward(False, True, 40), teaching_reward(True, True, 40)
    kept_wrong, degraded = teaching_reward(False, False, 40), teaching_reward(True, False, 40)
    assert improved > kept_correct > kept_wrong > degraded


@pytest.mark.parametrize(
    ("kwargs", "baseline", "taught", "expected"),
    [
        ({"degradation_penalty": -0.5}, True, False, -0.5),
        ({"keep_correct_factor": 1.0}, True, True, 1.5),
        ({"keep_wrong_reward": -0.1}, False, False, -0.1),
        ({"efficiency_weight": 0.0}, False, True, 1.0),
        ({"efficiency_weight": 2.0}, False, True, 2.0),
        ({"efficiency_scale": 300.0}, False, True, 1.75),  # 1 + 300 / 400
    ],
)
def test_teaching_reward_settings(kwargs: dict, baseline: bool, taught: bool, expected: float) -> None:
    assert teaching_reward(baseline, taught, 100, **kwargs) == pytest.approx(expected)


# Hand-computed from the table of notes section 3.1 (L = teaching tokens; e = 100 / (100 + L)):
# columns: degraded (b=1,t=0), kept correct (b=t=1), kept wrong (b=t=0), improved (b=0,t=1).
VARIANT_TABLE = [
    ("v1", 100, -2.0, 0.0, 0.0, 1.5),
    ("v1", 0, -2.0, 0.0, 0.0, 2.0),
    ("v1", 900, -2.0, 0.0, 0.0, 1.1),
    ("v2", 100, -2.0, 0.75, 0.0, 1.5),
    ("v2", 0, -2.0, 1.0, 0.0, 2.0),
    ("v2", 900, -2.0, 0.55, 0.0, 1.1),
    ("v3", 100, 0.0, 0.75, 0.0, 1.5),
    ("v3", 0, 0.0, 1.0, 0.0, 2.0),
    ("v3", 900, 0.0, 0.55, 0.0, 1.1),
    ("v4", 100, -1.0, 0.0, 0.0, 1.0),  # eff approximated as 0 (extracted-answer lengths, see PUBLISHED_VARIANTS)
    ("v4", 0, -1.0, 0.0, 0.0, 1.0),
]


@pytest.mark.parametrize(("variant", "tokens", "degraded", "kept_correct", "kept_wrong", "improved"), VARIANT_TABLE)
def test_published_variants(
    variant: str, tokens: int, degraded: float, kept_correct: float, kept_wrong: float, improved: float
) -> None:
    settings = PUBLISHED_VARIANTS[variant]
    assert teaching_reward(True, False, tokens, **settings) == pytest.approx(degraded)
    assert teaching_reward(True, True, tokens, **settings) == pytest.approx(kept_correct)
    assert teaching_reward(False, False, tokens, **settings) == pytest.approx(kept_wrong)
    assert teaching_reward(False, True, tokens, **settings) == pytest.approx(improved)


def test_published_variants_are_complete_and_accepted() -> None:
    assert sorted(PUBLISHED_VARIANTS) == ["v1", "v2", "v3", "v4"]
    for settings in PUBLISHED_VARIANTS.values():
        teaching_reward(0.5, 0.5, 10, **settings)  # every key is a keyword of teaching_reward


def test_v3_range_matches_the_notes() -> None:
    # notes: "degrade 0, keep-wrong 0, keep-right (0.5, 1], improve (1, 2]"
    v3 = PUBLISHED_VARIANTS["v3"]
    for tokens in (0, 1, 10, 100, 10_000):
        assert 0.5 < teaching_reward(True, True, tokens, **v3) <= 1.0
        assert 1.0 < teaching_reward(False, True, tokens, **v3) <= 2.0


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((-0.1, True, 10), {}, "baseline_accuracy"),
        ((1.5, True, 10), {}, "baseline_accuracy"),
        ((math.nan, True, 10), {}, "baseline_accuracy"),
        (("0.5", True, 10), {}, "baseline_accuracy"),
        ((None, True, 10), {}, "baseline_accuracy"),
        ((0.5, 2.0, 10), {}, "taught_correct"),
        ((0.5, -1, 10), {}, "taught_correct"),
        ((0.5, True, -1), {}, "teaching_tokens"),
        ((0.5, True, 1.5), {}, "teaching_tokens"),
        ((0.5, True, True), {}, "teaching_tokens"),
        ((0.5, True, "3"), {}, "teaching_tokens"),
        ((0.5, True, 10), {"efficiency_scale": 0.0}, "efficiency_scale"),
        ((0.5, True, 10), {"degradation_penalty": math.inf}, "degradation_penalty"),
        ((0.5, True, 10), {"keep_correct_factor": math.nan}, "keep_correct_factor"),
        ((0.5, True, 10), {"leak_penalty": "high"}, "leak_penalty"),
        ((2.0, True, 10), {"leaked": True}, "baseline_accuracy"),  # validated even when leaked
    ],
)
def test_teaching_reward_rejects_bad_input(args: tuple, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        teaching_reward(*args, **kwargs)


def test_efficiency_bonus() -> None:
    assert efficiency_bonus(0) == 1.0
    assert efficiency_bonus(100) == 0.5
    assert efficiency_bonus(100, efficiency_weight=2.0, efficiency_scale=50.0) == pytest.approx(2.0 / 3.0)


LIKELIHOOD_CASES = [
    # (logp_with, logp_without, clip, expected)
    (-2.0, -5.0, 5.0, 3.0),
    (-5.0, -2.0, 5.0, -3.0),
    (-1.0, -10.0, 5.0, 5.0),  # clipped up
    (-10.0, -1.0, 5.0, -5.0),  # clipped down
    (-1.0, -10.0, 2.0, 2.0),
    (-3.0, -3.0, 5.0, 0.0),
    (-math.inf, -math.inf, 5.0, 0.0),  # no information either way
    (-math.inf, -2.0, 5.0, -5.0),
    (-1.0, -math.inf, 5.0, 5.0),
    (0.0, -0.5, 5.0, 0.5),
    (1e-6, -0.5, 5.0, 0.500001),  # float noise above 0 is tolerated
]


@pytest.mark.parametrize(("with_", "without", "clip", "expected"), LIKELIHOOD_CASES)
def test_likelihood_reward(with_: float, without: float, clip: float, expected: float) -> None:
    assert likelihood_reward(with_, without, clip=clip) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("with_", "without", "clip", "message"),
    [
        (math.nan, -1.0, 5.0, "logp_with"),
        (-1.0, math.nan, 5.0, "logp_without"),
        (2.3, -1.0, 5.0, "logp_with"),  # a loss passed by mistake
        (-1.0, 0.7, 5.0, "logp_without"),
        (-1.0, -2.0, 0.0, "clip"),
        (-1.0, -2.0, -1.0, "clip"),
        ("-1", -2.0, 5.0, "logp_with"),
    ],
)
def test_likelihood_reward_rejects_bad_input(with_: float, without: float, clip: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        likelihood_reward(with_, without, clip=clip)


@pytest.mark.parametrize(
    ("baseline", "taught", "expected"),
    [
        (False, True, "improved"),
        (True, True, "kept_correct"),
        (False, False, "kept_wrong"),
        (True, False, "degraded"),
        (0, 1, "improved"),
    ],
)
def test_outcome(baseline: bool, taught: bool, expected: str) -> None:
    assert outcome(baseline, taught) == expected


@pytest.mark.parametrize(("baseline", "taught"), [(0.5, True), (True, None), (2, 1)])
def test_outcome_rejects_non_booleans(baseline: object, taught: object) -> None:
    with pytest.raises(ValueError, match="booleans"):
        outcome(baseline, taught)  # type: ignore[arg-type]


def test_outcome_rates_counts_booleans() -> None:
    rates = outcome_rates([False, True, False, True], [True, True, False, False])
    assert rates == {
        "improvement_rate": 0.25,
        "degradation_rate": 0.25,
        "kept_correct_rate": 0.25,
        "kept_wrong_rate": 0.25,
        "baseline_accuracy": 0.5,
        "taught_accuracy": 0.5,
        "accuracy_delta": 0.0,
        "non_degradation_rate": 0.75,
    }


def test_outcome_rates_takes_expectations_over_probabilities() -> None:
    rates = outcome_rates([0.5, 1.0], [True, 0.0])
    assert rates["improvement_rate"] == pytest.approx(0.25)  # (0.5 * 1 + 0) / 2
    assert rates["degradation_rate"] == pytest.approx(0.5)  # (0 + 1 * 1) / 2
    assert rates["kept_correct_rate"] == pytest.approx(0.25)
    assert rates["kept_wrong_rate"] == pytest.approx(0.0)
    assert rates["accuracy_delta"] == pytest.approx(0.5 - 0.75)
    assert sum(rates[k] for k in ("improvement_rate", "degradation_rate", "kept_correct_rate", "kept_wrong_rate")) == 1


@pytest.mark.parametrize(
    ("baseline", "taught", "message"),
    [([], [], "at least one"), ([True], [True, False], "same length"), ([1.5], [True], r"baseline\[0\]")],
)
def test_outcome_rates_rejects_bad_input(baseline: list, taught: list, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        outcome_rates(baseline, taught)
