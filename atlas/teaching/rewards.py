"""Teacher rewards as pure functions: the non-degradation teaching reward, the likelihood reward, and the expected
outcome rates of a batch (what GRPO logs per step; the evaluation's per-sample-pair rates are `atlas.teaching.metrics`).
No torch here; `atlas.training.rollout` wraps these in TRL reward callables.

Teaching reward for one guidance, with `b` = baseline correct and `t` = correct with the guidance:

    improved      (b=0, t=1):  1 + e
    kept correct  (b=1, t=1):  keep_correct_factor * (1 + e)
    kept wrong    (b=0, t=0):  keep_wrong_reward
    degraded      (b=1, t=0):  degradation_penalty
    leaked answer (any):       leak_penalty
    where e = efficiency_weight * efficiency_scale / (efficiency_scale + teaching_tokens)

The baseline is estimated from k student samples, so `b` is a probability p (the baseline accuracy) and the reward is
the expectation of the table over b ~ Bernoulli(p); `t` may likewise be a probability. The two outcomes are taken as
independent given the problem (the baseline never sees the guidance).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Literal

Outcome = Literal["improved", "kept_correct", "kept_wrong", "degraded"]

# Keyword settings of `teaching_reward` that reproduce the published AdaptiveTeachingReward versions (notes 3.1).
# None of them had a leak check: pass leaked=False to reproduce them exactly. Their baseline was one sample (p in
# {0, 1}). v1 measured teaching_tokens on the full teacher completion, v2-v4 on the extracted <teaching> text; v1's
# 0.5 credit for a substring match of the answer is not represented. v4's efficiency term was
# eff = (len(baseline answer) - len(taught answer)) / len(baseline answer) when shorter, else 0, measured in tokens
# of the *extracted answers* ("12" vs "12"), so it is 0 when both answers are the same string (always so for
# kept-correct up to formatting) and about 0 otherwise; it is approximated by efficiency_weight=0, which gives
# exactly: improved 1, kept correct 0, kept wrong 0, degraded -1.
PUBLISHED_VARIANTS: dict[str, dict[str, float]] = {
    name: {
        "degradation_penalty": degradation,
        "keep_correct_factor": keep_correct,
        "keep_wrong_reward": 0.0,
        "efficiency_weight": efficiency,
        "efficiency_scale": 100.0,
    }
    for name, degradation, keep_correct, efficiency in (
        ("v1", -2.0, 0.0, 1.0),
        ("v2", -2.0, 0.5, 1.0),
        ("v3", 0.0, 0.5, 1.0),
        ("v4", -1.0, 0.0, 0.0),
    )
}

# A log-probability above this is taken for a loss or a probability passed by mistake (float noise is far smaller).
_LOGP_SLACK = 1e-4


def _probability(name: str, value: bool | float) -> float:
    number = float(value) if isinstance(value, bool) else _number(name, value)
    if not 0.0 <= number <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return number


def _number(name: str, value: float) -> float:
    """`value` as a float; bools, strings and other non-numbers raise ValueError."""
    if isinstance(value, bool | str | bytes):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None


def _finite(name: str, value: float) -> float:
    number = _number(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return number


def efficiency_bonus(teaching_tokens: int, *, efficiency_weight: float = 1.0, efficiency_scale: float = 100.0) -> float:
    """`efficiency_weight * scale / (scale + tokens)`: 1x the weight for empty guidance, 0.5x at `scale` tokens."""
    if isinstance(teaching_tokens, bool):
        raise ValueError(f"teaching_tokens must be a non-negative integer, got {teaching_tokens!r}")
    try:
        tokens = operator.index(teaching_tokens)
    except TypeError:
        raise ValueError(f"teaching_tokens must be a non-negative integer, got {teaching_tokens!r}") from None
    if tokens < 0:
        raise ValueError(f"teaching_tokens must be a non-negative integer, got {tokens}")
    scale = _finite("efficiency_scale", efficiency_scale)
    if scale <= 0:
        raise ValueError(f"efficiency_scale must be > 0, got {efficiency_scale!r}")
    return _finite("efficiency_weight", efficiency_weight) * scale / (scale + tokens)


def teaching_reward(
    baseline_accuracy: bool | float,
    taught_correct: bool | float,
    teaching_tokens: int,
    *,
    degradation_penalty: float = -2.0,
    efficiency_weight: float = 1.0,
    keep_correct_factor: float = 0.5,
    keep_wrong_reward: float = 0.0,
    leaked: bool = False,
    leak_penalty: float = -1.0,
    efficiency_scale: float = 100.0,
) -> float:
    """The expected non-degradation teaching reward (table in the module docstring).

    `baseline_accuracy` is the student's accuracy without guidance (a bool for one sample, or the mean of k samples);
    `taught_correct` is the correctness with the guidance (bool, or a probability). `teaching_tokens` is the length
    of the guidance the student saw. A leak returns `leak_penalty` whatever the outcome. Raises ValueError on a
    probability outside [0, 1], negative tokens, a non-positive efficiency scale or a non-finite setting.
    """
    p = _probability("baseline_accuracy", baseline_accuracy)
    q = _probability("taught_correct", taught_correct)
    bonus = efficiency_bonus(teaching_tokens, efficiency_weight=efficiency_weight, efficiency_scale=efficiency_scale)
    improved = 1.0 + bonus
    kept_correct = _finite("keep_correct_factor", keep_correct_factor) * improved
    kept_wrong = _finite("keep_wrong_reward", keep_wrong_reward)
    degraded = _finite("degradation_penalty", degradation_penalty)
    penalty = _finite("leak_penalty", leak_penalty)
    if leaked:
        return penalty
    return p * (q * kept_correct + (1 - q) * degraded) + (1 - p) * (q * improved + (1 - q) * kept_wrong)


def likelihood_reward(logp_with: float, logp_without: float, *, clip: float = 5.0) -> float:
    """The gain in the student's log-probability of the gold answer from the guidance, clipped to [-clip, clip].

    Pass both values on the same scale (sums over the answer tokens, or per-token means). Equal values (including
    both -inf) give 0. Raises ValueError on NaN, a positive log-probability (a loss or probability passed by
    mistake) or a non-positive clip.
    """
    bound = _finite("clip", clip)
    if bound <= 0:
        raise ValueError(f"clip must be > 0, got {clip!r}")
    with_, without = _number("logp_with", logp_with), _number("logp_without", logp_without)
    for name, value in (("logp_with", with_), ("logp_without", without)):
        if math.isnan(value) or value > _LOGP_SLACK:
            raise ValueError(f"{name} must be a log-probability (<= 0), got {value!r}; was a loss passed instead?")
    if with_ == without:
        return 0.0
    return max(-bound, min(bound, with_ - without))


def outcome(baseline_correct: bool, taught_correct: bool) -> Outcome:
    """Classify one (baseline, taught) pair of single-sample results."""
    if baseline_correct not in (0, 1) or taught_correct not in (0, 1):
        raise ValueError(f"outcome needs booleans, got {baseline_correct!r}, {taught_correct!r}")
    if baseline_correct:
        return "kept_correct" if taught_correct else "degraded"
    return "improved" if taught_correct else "kept_wrong"


def outcome_rates(baseline: Sequence[bool | float], taught: Sequence[bool | float]) -> dict[str, float]:
    """Expected outcome rates over problems, from per-problem baseline accuracies and taught correctness.

    Keys: improvement_rate (b=0, t=1), degradation_rate (b=1, t=0), kept_correct_rate, kept_wrong_rate,
    baseline_accuracy, taught_accuracy, accuracy_delta (taught - baseline) and non_degradation_rate
    (1 - degradation_rate). With booleans these are plain counts over n; with probabilities, expectations.
    """
    if len(baseline) != len(taught):
        raise ValueError(f"baseline and taught must have the same length, got {len(baseline)} and {len(taught)}")
    if not baseline:
        raise ValueError("outcome_rates needs at least one problem")
    pairs = [
        (_probability(f"baseline[{i}]", b), _probability(f"taught[{i}]", t))
        for i, (b, t) in enumerate(zip(baseline, taught, strict=True))
    ]
    n = len(pairs)
    rates = {
        "improvement_rate": sum((1 - p) * q for p, q in pairs) / n,
        "degradation_rate": sum(p * (1 - q) for p, q in pairs) / n,
        "kept_correct_rate": sum(p * q for p, q in pairs) / n,
        "kept_wrong_rate": sum((1 - p) * (1 - q) for p, q in pairs) / n,
        "baseline_accuracy": sum(p for p, _ in pairs) / n,
        "taught_accuracy": sum(q for _, q in pairs) / n,
    }
    rates["accuracy_delta"] = rates["taught_accuracy"] - rates["baseline_accuracy"]
    rates["non_degradation_rate"] = 1.0 - rates["degradation_rate"]
    return rates
