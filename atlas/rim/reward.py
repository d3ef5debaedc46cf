"""`RIMReward`: the judge ensemble as a TRL reward function, a batch scorer and an ad-hoc evaluator.

    reward = RIMReward(load_rim_config("configs/rim_config.yaml"))
    GRPOTrainer(..., reward_funcs=[reward])        # async __call__(prompts, completions, **columns) -> rewards
    reward.score_sync(question=[...], taught_response=[...], ...)   # from synchronous code, loop or not
    reward.evaluate(question=..., baseline_response=..., taught_response=..., teaching=...)
    reward.evaluate_session({"task": ..., "steps": [...], "final_answer": ...})
    reward.evaluate_sessions([...], learnings=LearningMemory(path).context())   # many sessions, with the memory

Per row, every active judge runs the two-tier ensemble (`ensemble.py`); all calls of a batch run concurrently
under one `max_concurrency` semaphore. The row reward is the weighted mean of the judges that scored (`rows.py`).
After each batch: `last_metrics` (`rim_rewards/<judge>`, `escalation_rate`, `unscored_rate`, `partial_rate` (rows
scored by only part of the panel), `calls`, `cache_hits`, `cost_usd`, `tokens`, ...), `last_explanations` (one
rationale per judge) and `last_results` (everything, with the audit).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import statistics
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from atlas.core.progress import Progress
from atlas.rim.audit import JudgeResult, Usage
from atlas.rim.backends import Backend, create_backend
from atlas.rim.cache import NullCache, ReplyCache
from atlas.rim.calls import Runtime, run_sync
from atlas.rim.config import RIMConfig, apply_rim_overrides, build_rim_config, load_rim_config
from atlas.rim.ensemble import run_judge
from atlas.rim.judges import get_judge
from atlas.rim.rows import RowResult, combine, rows_from_columns
from atlas.rim.session import SessionTrajectory, evaluate_session, parse_trajectory, session_payload

logger = logging.getLogger(__name__)


def batch_metrics(results: Sequence[RowResult], usage: Usage, judges: Sequence[str]) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for name in judges:
        scores = [r.judges[name].score for r in results if name in r.judges and r.judges[name].score is not None]
        if scores:
            metrics[f"rim_rewards/{name}"] = float(statistics.fmean(scores))
    finals = [r.score for r in results if r.score is not None]
    if finals:
        metrics["rim_reward"] = float(statistics.fmean(finals))
    judge_results = [j for r in results for j in r.judges.values()]
    escalated = sum(j.escalated for j in judge_results)
    metrics["escalation_rate"] = escalated / len(judge_results) if judge_results else 0.0
    metrics["unscored_rate"] = sum(r.score is None for r in results) / len(results) if results else 0.0
    metrics["partial_rate"] = sum(r.partial for r in results) / len(results) if results else 0.0
    metrics["calls"] = float(usage.calls)
    metrics["cache_hits"] = float(usage.cache_hits)
    metrics["retries"] = float(usage.retries)
    metrics["tokens"] = float(usage.tokens)
    metrics["cost_usd"] = float(usage.cost_usd)
    return metrics


def _late(judge: str, error: str) -> JudgeResult:
    return JudgeResult(
        judge=judge, score=None, uncertainty=None, rationale="", principles=[], samples=[], escalated=False,
        escalation_reasons=[], source="none", error=error,
    )  # fmt: skip


class RIMReward:
    """The RIM reward. Pass a `RIMConfig`, or a config path (+ overrides); tests may inject `backends`
    (`{"small": Backend, "large": Backend}`). TRL logs it as `rewards/rim`."""

    __name__ = "rim"

    def __init__(
        self,
        config: RIMConfig | str | Path | None = None,
        *,
        config_path: str | Path | None = None,
        overrides: dict[str, Any] | list[str] | None = None,
        backends: Mapping[str, Backend] | None = None,
    ) -> None:
        if isinstance(config, RIMConfig):
            data = apply_rim_overrides(config.model_dump(), overrides)
            self.config = build_rim_config(data, origin="RIM config with overrides") if overrides else config
        else:
            self.config = load_rim_config(config_path or config, overrides)
        self.__name__ = "rim"
        self._backends = dict(backends) if backends else None
        self._cache: ReplyCache | NullCache | None = None
        self.last_metrics: dict[str, float] = {}
        self.last_explanations: dict[str, str] = {}
        self.last_results: list[RowResult] = []
        self.last_usage = Usage()

    # ------------------------------------------------------------------ plumbing

    def backends(self) -> tuple[Backend, Backend]:
        if self._backends is None:
            small = create_backend(self.config.small_model, "small_model")
            same = self.config.large_model == self.config.small_model
            large = small if same else create_backend(self.config.large_model, "large_model")
            self._backends = {"small": small, "large": large}
        return self._backends["small"], self._backends.get("large", self._backends["small"])

    def cache(self) -> ReplyCache | NullCache:
        if self._cache is None:
            cfg = self.config.cache
            self._cache = ReplyCache(cfg.path) if cfg.enabled else NullCache()
        return self._cache

    @contextlib.asynccontextmanager
    async def runtime(self) -> AsyncIterator[Runtime]:
        """A scoring run bound to the running event loop (closes loop-bound HTTP sessions at the end)."""
        small, large = self.backends()
        runtime = Runtime(self.config, small, large, self.cache())
        try:
            await runtime.prepare()
            yield runtime
        finally:
            await runtime.aclose()

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()
            self._cache = None

    # ------------------------------------------------------------------ batch scoring

    async def score_rows(self, rows: Sequence[Mapping[str, Any]], deadline: float | None = None) -> list[RowResult]:
        """Every row scored by every enabled judge. With a `deadline` (seconds), the judges still running then are
        cancelled and their rows get `score=None` with the reason (counted as `deadline_unscored`)."""
        names = self.config.enabled_judges()
        specs = [get_judge(name, self.config) for name in names]
        async with self.runtime() as runtime:
            tasks = [asyncio.ensure_future(run_judge(spec, row, runtime)) for row in rows for spec in specs]
            progress = Progress(f"RIM: {len(rows)} rows x {len(specs)} judges", len(tasks), unit="judgment")
            for task in tasks:
                task.add_done_callback(lambda _: progress.update(1))
            done, late = await asyncio.wait(tasks, timeout=deadline) if tasks else (set(), set())
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
            progress.close()
        outcomes = [None if task in late else task.result() for task in tasks]
        results, unscored = [], 0
        for i, row in enumerate(rows):
            row_outcomes = outcomes[i * len(specs) : (i + 1) * len(specs)]
            if any(o is None for o in row_outcomes):  # the deadline passed before every judge of the row finished
                unscored += 1
                error = f"not scored within rim.batch_deadline_seconds={deadline:g}"
                judged = {n: o or _late(n, error) for n, o in zip(names, row_outcomes, strict=True)}
                results.append(RowResult(score=None, judges=judged, error=error, inputs=dict(row)))
                continue
            judged: dict[str, JudgeResult] = dict(zip(names, row_outcomes, strict=True))
            score, error = combine(judged, self.config)
            results.append(RowResult(score=score, judges=judged, error=error, inputs=dict(row)))
        if unscored:
            logger.warning(
                "RIM: %d of %d rows not scored within the batch deadline of %g s (their reward is None)",
                unscored, len(rows), deadline,
            )  # fmt: skip
        self._remember(results, runtime.usage, names)
        self.last_metrics["deadline_unscored"] = float(unscored)
        return results

    def _remember(self, results: list[RowResult], usage: Usage, names: Sequence[str]) -> None:
        self.last_results, self.last_usage = results, usage
        self.last_metrics = batch_metrics(results, usage, names)
        self.last_explanations = {}
        for name in names:
            for r in results:
                judge = r.judges.get(name)
                if judge is not None and judge.score is not None and judge.rationale:
                    self.last_explanations[name] = judge.rationale
                    break

    async def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **kwargs: Any) -> list[float | None]:
        """TRL reward: one float (or None = could not score) per completion. Columns arrive as kwargs. The batch
        ends after `rim.batch_deadline_seconds`, so a judge endpoint that hangs cannot stall training (evaluation and
        `rim score` have no such deadline: their rows are all scored, within each call's own timeout and retries)."""
        rows = rows_from_columns(prompts, completions, kwargs)
        results = await self.score_rows(rows, deadline=self.config.batch_deadline_seconds)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric):
            for name, value in self.last_metrics.items():
                log_metric(name, value)
        return [r.score for r in results]

    def score_batch_sync(self, rows: Sequence[Mapping[str, Any]]) -> list[RowResult]:
        return run_sync(lambda: self.score_rows(rows))

    def score_sync(
        self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None, **columns: Any
    ) -> list[float | None]:
        """Synchronous scoring from per-row column lists (works inside a running event loop too)."""
        rows = rows_from_columns(prompts, completions, columns)
        return [r.score for r in self.score_batch_sync(rows)]

    # ------------------------------------------------------------------ ad-hoc evaluation

    async def aevaluate(self, trajectory: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        row = {**dict(trajectory or {}), **fields}
        [result] = await self.score_rows([row])
        out: dict[str, Any] = {name: j.score for name, j in result.judges.items()}
        out.update(
            score=result.score,
            rationale=" | ".join(f"{name}: {j.rationale or j.error}" for name, j in result.judges.items()),
            escalated=result.escalated,
            escalation_reasons={name: j.escalation_reasons for name, j in result.judges.items() if j.escalated},
            baseline_accuracy=row.get("baseline_accuracy"),
            error=result.error,
            judges={name: j.to_dict(include_calls=False) for name, j in result.judges.items()},
            metrics=dict(self.last_metrics),
        )
        return out

    def evaluate(self, trajectory: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Score one interaction: `question`, `baseline_response`, `taught_response`, `teaching`, and optionally
        `ground_truth`, `student_probe`, `baseline_accuracy` (as a dict and/or keywords). Returns per-judge scores
        (top-level keys named after the judges), the final `score`, a `rationale` and escalation info."""
        return run_sync(lambda: self.aevaluate(trajectory, **fields))

    async def aevaluate_sessions(
        self,
        trajectories: Sequence[Mapping[str, Any] | SessionTrajectory],
        focus_prompt: str | None = None,
        learnings: Sequence[Mapping[str, Any]] = (),
    ) -> list[JudgeResult]:
        """Judge whole sessions concurrently (one runtime: one semaphore, one cache). `learnings` (from the learning
        memory, `LearningMemory.recent`) are shown to the judge of every session they are relevant to."""
        parsed = [parse_trajectory(t, origin=f"trajectory {i + 1}") for i, t in enumerate(trajectories)]
        async with self.runtime() as runtime:
            results = await asyncio.gather(*(evaluate_session(t, runtime, focus_prompt, learnings) for t in parsed))
        self.last_usage = runtime.usage
        self.last_metrics = batch_metrics([], runtime.usage, [])
        self.last_metrics["escalation_rate"] = sum(r.escalated for r in results) / len(results) if results else 0.0
        return list(results)

    def evaluate_sessions(
        self,
        trajectories: Sequence[Mapping[str, Any] | SessionTrajectory],
        focus_prompt: str | None = None,
        learnings: Sequence[Mapping[str, Any]] = (),
    ) -> list[JudgeResult]:
        return run_sync(lambda: self.aevaluate_sessions(trajectories, focus_prompt, learnings))

    async def aevaluate_session(
        self,
        trajectory: Mapping[str, Any] | SessionTrajectory,
        focus_prompt: str | None = None,
        learnings: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        [result] = await self.aevaluate_sessions([trajectory], focus_prompt, learnings)
        return session_payload(result)

    def evaluate_session(
        self,
        trajectory: Mapping[str, Any] | SessionTrajectory,
        focus_prompt: str | None = None,
        learnings: Sequence[Mapping[str, Any]] = (),
    ) -> dict[str, Any]:
        """The session JSON: principles, score, rationale, uncertainty, student_learning, teacher_learning."""
        return run_sync(lambda: self.aevaluate_session(trajectory, focus_prompt, learnings))
