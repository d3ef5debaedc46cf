"""GRPO reward callables over one shared rollout of the frozen student.

Per GRPO batch, each teacher completion costs at most ONE student generation (the taught answer; none for an empty
guidance to a greedy student, whose answer is the cached baseline): the probe, the baseline answers and the
no-guidance log p(gold) come from the probe stage's records. The rollout is keyed by (problem id, completion), so the
teaching, likelihood and RIM rewards all read the same taught answer.

The rewards follow TRL's convention: callable objects `f(prompts, completions, **columns) -> list[float | None]`
with a stable `__name__` (TRL logs `rewards/<name>`), small classes as TRL's own parameterised rewards are; the RIM
one is `async`, so TRL runs it concurrently with the others.
"""

from __future__ import annotations

import logging
import statistics
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from atlas.config import AtlasConfig, RewardSettings
from atlas.teaching.protocol import extract_teaching, grade, guidance_leaks, taught_answers
from atlas.teaching.records import ProbeRecord
from atlas.teaching.rewards import likelihood_reward, outcome_rates, teaching_reward

log = logging.getLogger(__name__)


class TeachingRollout:
    """The student's taught answer (and its log p(gold)) for each (problem, teacher completion), computed once."""

    def __init__(
        self, cfg: AtlasConfig, student, probes: Mapping[str, ProbeRecord], count_tokens: Callable[[str], int]
    ):
        self.cfg = cfg
        self.student = student
        self.probes = probes
        self.count_tokens = count_tokens
        self._cache: dict[tuple[str, str], dict] = {}
        self._batch = 0
        self._step: int | None = None  # the trainer's global step of the current batch, when TRL passes it

    def outcomes(self, completions: list[str], ids: list[str], trainer_state=None) -> list[dict]:
        """The outcome of each (problem, completion). Under TRL (`trainer_state` given) the student's sampling seed
        follows the trainer's global step and outcomes are kept for one step only, so a run resumed from a
        checkpoint samples exactly what the uninterrupted run sampled."""
        step = getattr(trainer_state, "global_step", None)
        if step is not None and step != self._step:
            self._cache, self._step, self._batch = {}, step, 0
        keys = list(zip(ids, completions, strict=True))
        missing = list(dict.fromkeys(k for k in keys if k not in self._cache))
        if missing:
            self._cache = {k: v for k, v in self._cache.items() if k in set(keys)}  # keep memory flat
            self._run(missing)
        return [self._cache[k] for k in keys]

    def _seed(self) -> int:
        """The student's sampling seed of the next batch: by global step (and batch within it) under TRL, else by
        batch count. The first batch of step s gets the seed the batch count gave it before (s + 1)."""
        self._batch += 1
        if self._step is None:
            return self.cfg.protocol.seed + 7919 * self._batch
        return self.cfg.protocol.seed + 7919 * (self._step + 1) + 104729 * (self._batch - 1)

    def _run(self, keys: list[tuple[str, str]]) -> None:
        teachings = [extract_teaching(completion) for _, completion in keys]
        probes = [self.probes[pid] for pid, _ in keys]
        answers, logps = taught_answers(
            self.cfg.protocol,
            self.student,
            probes,
            teachings,
            k=1,
            seed=self._seed(),
            label="teacher",
            score=bool(self.cfg.reward.likelihood_weight),
        )
        for key, probe, teaching, answer, logp in zip(keys, probes, teachings, answers, logps, strict=True):
            correct, completed = grade(answer[0].text, probe.ground_truth, answer[0].truncated)
            self._cache[key] = {
                "teaching": teaching,
                "teaching_tokens": self.count_tokens(teaching) if teaching else 0,
                "leaked": guidance_leaks(teaching, probe.ground_truth, probe.problem),
                "taught_response": answer[0].text,
                "taught_correct": correct,
                "taught_completed": completed,
                "taught_logp": logp,
                "baseline_accuracy": probe.baseline_accuracy,
                "baseline_logp": probe.baseline_logp,
            }


_LOGGED_RATES = ("baseline_accuracy", "taught_accuracy", "accuracy_delta", "improvement_rate", "degradation_rate")


def batch_stats(outcomes: list[dict]) -> dict[str, float]:
    """Teaching statistics of one batch (expected rates over the baseline's k samples, `outcome_rates`)."""
    rates = outcome_rates([o["baseline_accuracy"] for o in outcomes], [o["taught_correct"] for o in outcomes])
    return {
        **{f"teach/{name}": rates[name] for name in _LOGGED_RATES},
        "teach/leak_rate": statistics.fmean(float(o["leaked"]) for o in outcomes),
        "teach/teaching_tokens": statistics.fmean(o["teaching_tokens"] for o in outcomes),
        "teach/completion_rate": statistics.fmean(float(o["taught_completed"]) for o in outcomes),
    }


class TeachingReward:
    """The non-degradation teaching reward of each completion, from the student's measured outcome."""

    __name__ = "teaching"

    def __init__(self, rollout: TeachingRollout, reward: RewardSettings):
        self.__name__ = "teaching"
        self.rollout, self.reward = rollout, reward

    def __call__(self, prompts, completions, id, log_metric=None, trainer_state=None, **_) -> list[float]:  # noqa: A002
        outs = self.rollout.outcomes(completions, id, trainer_state)
        if log_metric is not None:
            for name, value in batch_stats(outs).items():
                log_metric(name, value)
        r = self.reward
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


class LikelihoodReward:
    """The gain in the student's log p(gold) from the guidance, weighted by how often the student was wrong alone.

    On a problem it already solves, raising p(gold) is worth nothing and only the teaching reward (do not break it)
    counts. Unweighted, hints that restate numbers raise p(gold) everywhere and GRPO learned to teach every problem,
    right attempts included (measured)."""

    __name__ = "likelihood"

    def __init__(self, rollout: TeachingRollout, reward: RewardSettings):
        self.__name__ = "likelihood"
        self.rollout, self.reward = rollout, reward

    def __call__(self, prompts, completions, id, trainer_state=None, **_) -> list[float]:  # noqa: A002 - column name
        r = self.reward
        return [
            r.leak_penalty
            if o["leaked"]
            else (1.0 - o["baseline_accuracy"])
            * likelihood_reward(o["taught_logp"], o["baseline_logp"], clip=r.likelihood_clip)
            for o in self.rollout.outcomes(completions, id, trainer_state)
        ]


def rim_metric_name(name: str) -> str:
    """The judge's batch metric as GRPO logs it: `rim_rewards/<judge>` and `escalation_rate` as the reward-system
    document names them, the rest under `rim/` (`rim/calls`, `rim/cost_usd`, `rim/unscored_rate`, ...), so they do
    not read as TRL's own (`num_tokens` beside the judges' `tokens`)."""
    return name if name.startswith("rim_rewards/") or name == "escalation_rate" else f"rim/{name}"


class RolloutRIMReward:
    """The RIM judge ensemble on each completion's interaction (the guidance the student saw and its answer).

    Per batch it logs the judge's metrics (`rim_rewards/<judge>`, `escalation_rate`, `rim/...`: `rim_metric_name`)
    through TRL's `log_metric`, and each completion's explanation (`rim_rationale`, `rim_escalated`, `rim_judges`:
    `judgment_columns`) through TRL's `log_extra` (columns of TRL's completions table) and into `explanations`, which
    `atlas.training.callbacks.MlflowRimExplanationsCallback` empties into the stage's MLflow run at each logging step
    (TRL hands `log_extra` columns only to its console print, parquet files and W&B / Trackio, never to MLflow)."""

    __name__ = "rim"

    def __init__(self, rollout: TeachingRollout, judge: Any, keep: int = 10_000):
        self.__name__ = "rim"
        self.rollout, self.judge = rollout, judge
        self.explanations: deque[dict[str, Any]] = deque(maxlen=keep)  # since the last `drain`, newest kept

    def drain(self) -> list[dict[str, Any]]:
        """The explanations collected since the last call, oldest first."""
        rows = list(self.explanations)
        self.explanations.clear()
        return rows

    async def __call__(
        self,
        prompts,
        completions,
        id,  # noqa: A002 - TRL's column name
        log_metric=None,
        log_extra=None,
        trainer_state=None,
        **_,
    ) -> list[float | None]:
        from atlas.rim.rows import judgment_columns, judgment_summary, trajectory_columns

        outs = self.rollout.outcomes(completions, id, trainer_state)
        probes = [self.rollout.probes[pid] for pid in id]
        columns = trajectory_columns(probes, [o["teaching"] for o in outs], [o["taught_response"] for o in outs])
        scores = await self.judge(prompts, completions, **columns)
        if log_metric is not None:
            for name, value in self.judge.last_metrics.items():
                log_metric(rim_metric_name(name), value)
        explained = [judgment_columns(judgment_summary(r)) for r in self.judge.last_results]
        if len(explained) != len(scores):  # a judge that does not keep its results: nothing to explain
            explained = [judgment_columns(None)] * len(scores)
        if log_extra is not None:
            for column in ("rim_rationale", "rim_escalated", "rim_judges"):
                log_extra(column, [e[column] for e in explained])
        for pid, out, score, explanation in zip(id, outs, scores, explained, strict=True):
            self.explanations.append(
                {"id": pid, "guidance": out["teaching"], "taught_answer": out["taught_response"], "rim_score": score}
                | explanation
            )
        return scores


def make_reward_funcs(cfg: AtlasConfig, rollout: TeachingRollout) -> tuple[list[Callable], list[float]]:
    """The reward callables with non-zero weight, and their weights (for `GRPOConfig.reward_weights`)."""
    r = cfg.reward
    funcs: list[Callable] = []
    weights: list[float] = []
    if r.teaching_weight:
        funcs.append(TeachingReward(rollout, r))
        weights.append(r.teaching_weight)
    if r.likelihood_weight:
        funcs.append(LikelihoodReward(rollout, r))
        weights.append(r.likelihood_weight)
    if r.rim_weight:
        from atlas.rim import RIMReward, load_rim_config

        funcs.append(RolloutRIMReward(rollout, RIMReward(load_rim_config(cfg.rim.config_path, cfg.rim.overrides))))
        weights.append(r.rim_weight)
    return funcs, weights
