"""GRPO reward functions over one shared rollout of the frozen student.

Per GRPO batch, each teacher completion costs at most ONE student generation (the taught answer; none for an empty
guidance to a greedy student, whose answer is the cached baseline): the probe, the baseline answers and the
no-guidance log p(gold) come from the probe stage's cache. The rollout is keyed by
(problem id, completion), so the teaching, likelihood and RIM rewards all read the same taught answer.
Reward functions follow TRL's convention: `f(prompts, completions, **columns) -> list[float | None]`.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable

from atlas.config import AtlasConfig
from atlas.protocol import extract_teaching, grade, guidance_leaks, taught_answers
from atlas.rewards import likelihood_reward, teaching_reward

log = logging.getLogger(__name__)


class TeachingRollout:
    def __init__(self, cfg: AtlasConfig, student, probes: dict[str, dict], count_tokens: Callable[[str], int]):
        self.cfg = cfg
        self.student = student
        self.probes = probes
        self.count_tokens = count_tokens
        self._cache: dict[tuple[str, str], dict] = {}
        self._batch = 0

    def outcomes(self, completions: list[str], ids: list[str]) -> list[dict]:
        keys = list(zip(ids, completions, strict=True))
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            self._cache = {k: v for k, v in self._cache.items() if k in set(keys)}  # keep memory flat
            self._run(missing)
        return [self._cache[k] for k in keys]

    def _run(self, keys: list[tuple[str, str]]) -> None:
        teachings = [extract_teaching(completion) for _, completion in keys]
        probes = [self.probes[pid] for pid, _ in keys]
        self._batch += 1
        answers, logps = taught_answers(
            self.cfg,
            self.student,
            probes,
            teachings,
            k=1,
            seed=self.cfg.protocol.seed + 7919 * self._batch,
            label="teacher",
            score=bool(self.cfg.reward.likelihood_weight),
        )
        for key, probe, teaching, answer, logp in zip(keys, probes, teachings, answers, logps, strict=True):
            correct, completed = grade(answer[0].text, probe["ground_truth"], answer[0].truncated)
            self._cache[key] = {
                "teaching": teaching,
                "teaching_tokens": self.count_tokens(teaching) if teaching else 0,
                "leaked": guidance_leaks(teaching, probe["ground_truth"], probe["problem"]),
                "taught_response": answer[0].text,
                "taught_correct": correct,
                "taught_completed": completed,
                "taught_logp": logp,
                "baseline_accuracy": probe["baseline_accuracy"],
                "baseline_logp": probe["baseline_logp"],
            }


def batch_stats(outcomes: list[dict]) -> dict[str, float]:
    """Teaching statistics of one batch (expected rates over the baseline's k samples)."""
    p = [o["baseline_accuracy"] for o in outcomes]
    t = [float(o["taught_correct"]) for o in outcomes]
    return {
        "teach/baseline_accuracy": statistics.fmean(p),
        "teach/taught_accuracy": statistics.fmean(t),
        "teach/accuracy_delta": statistics.fmean(t) - statistics.fmean(p),
        "teach/improvement_rate": statistics.fmean((1 - b) * c for b, c in zip(p, t, strict=True)),
        "teach/degradation_rate": statistics.fmean(b * (1 - c) for b, c in zip(p, t, strict=True)),
        "teach/leak_rate": statistics.fmean(float(o["leaked"]) for o in outcomes),
        "teach/teaching_tokens": statistics.fmean(o["teaching_tokens"] for o in outcomes),
        "teach/completion_rate": statistics.fmean(float(o["taught_completed"]) for o in outcomes),
    }


def make_reward_funcs(cfg: AtlasConfig, rollout: TeachingRollout) -> tuple[list[Callable], list[float]]:
    """The reward callables with non-zero weight, and their weights (for `GRPOConfig.reward_weights`)."""
    r = cfg.reward
    funcs: list[Callable] = []
    weights: list[float] = []

    def teaching(prompts, completions, id, log_metric=None, **_):  # noqa: A002 - dataset column name
        outs = rollout.outcomes(completions, id)
        if log_metric is not None:
            for name, value in batch_stats(outs).items():
                log_metric(name, value)
        return [
            teaching_reward(
                o["baseline_accuracy"],
                o["taught_correct"],
                o["teaching_tokens"],
                degradation_penalty=r.degradation_penalty,
                efficiency_weight=r.efficiency_weight,
                keep_correct_factor=r.keep_correct_factor,
                leaked=o["leaked"],
                leak_penalty=r.leak_penalty,
            )
            for o in outs
        ]

    def likelihood(prompts, completions, id, **_):  # noqa: A002
        # Weighted by how often the student was wrong alone: on a problem it already solves, raising p(gold) is worth
        # nothing and only the teaching reward (do not break it) counts. Unweighted, hints that restate numbers
        # raise p(gold) everywhere and GRPO learned to teach every problem, right attempts included (measured).
        outs = rollout.outcomes(completions, id)
        return [
            r.leak_penalty
            if o["leaked"]
            else (1.0 - o["baseline_accuracy"])
            * likelihood_reward(o["taught_logp"], o["baseline_logp"], clip=r.likelihood_clip)
            for o in outs
        ]

    if r.teaching_weight:
        funcs.append(teaching)
        weights.append(r.teaching_weight)
    if r.likelihood_weight:
        funcs.append(likelihood)
        weights.append(r.likelihood_weight)
    if r.rim_weight:
        funcs.append(make_rim_reward(cfg, rollout))
        weights.append(r.rim_weight)
    return funcs, weights


def rim_kwargs(outcomes: list[dict], probes: list[dict]) -> dict[str, list]:
    """The trajectory fields RIM judges read, one list entry per completion."""
    return {
        "question": [p["problem"] for p in probes],
        "ground_truth": [p["ground_truth"] for p in probes],
        "student_probe": [p["probe"] for p in probes],
        "baseline_response": [p["baseline"][0]["text"] for p in probes],
        "baseline_accuracy": [p["baseline_accuracy"] for p in probes],
        "teaching": [o["teaching"] for o in outcomes],
        "taught_response": [o["taught_response"] for o in outcomes],
    }


def make_rim_reward(cfg: AtlasConfig, rollout: TeachingRollout) -> Callable:
    from atlas.rim import RIMReward, load_rim_config

    judge = RIMReward(load_rim_config(cfg.rim.config_path, cfg.rim.overrides))

    async def rim(prompts, completions, id, log_metric=None, **_):  # noqa: A002
        outs = rollout.outcomes(completions, id)
        probes = [rollout.probes[pid] for pid in id]
        scores = await judge(prompts, completions, **rim_kwargs(outs, probes))
        if log_metric is not None:
            for name, value in judge.last_metrics.items():
                log_metric(name, value)
        return scores

    return rim
