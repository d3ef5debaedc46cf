"""The two-tier ensemble: tier-1 samples at each temperature, escalation rules, the arbiter, the final choice.

Escalate to the large model (the arbiter) when ANY of these holds:
- `no_valid_sample`: no tier-1 sample produced a valid judgment;
- `disagreement`: the population standard deviation of the valid scores exceeds `variance_threshold`
  (the name is historical: it is a standard deviation, compared with `>`);
- `uncertainty`: some valid sample reports uncertainty above `uncertainty_threshold` (`>`).
The arbiter sees the full material plus every valid tier-1 judgment; its judgment replaces them. If it fails, the
judge result has no score (None) and says why: an escalated case is never settled with a number nobody vouched for.
Otherwise the most confident tier-1 judgment wins (lowest uncertainty; ties go to the lowest temperature, then to
the earliest position in `temperatures`), so the choice never depends on completion order. With
`aggregation.tier1_selection: mean` the score is the mean of the valid scores instead, and the rationale and
principles still come from the most confident sample.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from atlas.rim.audit import JudgeResult, Sample
from atlas.rim.backends.base import JudgeContext
from atlas.rim.calls import Runtime
from atlas.rim.judges import JudgeSpec


@dataclass(frozen=True)
class Decision:
    escalate: bool
    reasons: tuple[str, ...]
    explanation: tuple[str, ...]
    selected: int | None  # index into the samples of the chosen tier-1 judgment, when not escalating


def most_confident(samples: Sequence[Sample]) -> int | None:
    """Index of the valid sample with the lowest uncertainty; ties -> lowest temperature -> earliest position."""
    ranked = [(s.judgment.uncertainty, s.temperature, i) for i, s in enumerate(samples) if s.judgment is not None]
    return min(ranked)[2] if ranked else None


def decide(samples: Sequence[Sample], variance_threshold: float, uncertainty_threshold: float) -> Decision:
    valid = [s.judgment for s in samples if s.judgment is not None]
    if not valid:
        return Decision(True, ("no_valid_sample",), ("no tier-1 sample produced a valid judgment",), None)
    reasons, explanation = [], []
    spread = statistics.pstdev([j.score for j in valid]) if len(valid) > 1 else 0.0
    if spread > variance_threshold:
        reasons.append("disagreement")
        explanation.append(f"score std {spread:.3f} > variance_threshold {variance_threshold:g}")
    worst = max(j.uncertainty for j in valid)
    if worst > uncertainty_threshold:
        reasons.append("uncertainty")
        explanation.append(f"max uncertainty {worst:.3f} > uncertainty_threshold {uncertainty_threshold:g}")
    if reasons:
        return Decision(True, tuple(reasons), tuple(explanation), None)
    return Decision(False, (), (), most_confident(samples))


async def _tier1(spec: JudgeSpec, prompt: str, inputs: Mapping[str, Any], runtime: Runtime) -> tuple[list, list]:
    context = JudgeContext(judge=spec.name, tier="tier1", inputs=inputs)

    async def one(temperature: float):
        return await runtime.small.judge(prompt, temperature, spec.output, context)

    outcomes = await asyncio.gather(*(one(t) for t in runtime.cfg.temperatures))
    samples, calls = [], []
    for temperature, (judgment, error, records) in zip(runtime.cfg.temperatures, outcomes, strict=True):
        samples.append(Sample(temperature=temperature, judgment=judgment, error=error))
        calls.extend(records)
    return samples, calls


async def run_judge(
    spec: JudgeSpec, inputs: Mapping[str, Any], runtime: Runtime, focus: str | None = None
) -> JudgeResult:
    """One judge on one trajectory, through both tiers as needed."""
    cfg = runtime.cfg
    prompt = spec.build_prompt(inputs, cfg, focus=focus)
    samples, calls = await _tier1(spec, prompt, inputs, runtime)
    decision = decide(samples, cfg.variance_threshold, cfg.uncertainty_threshold)
    if not decision.escalate:
        chosen = samples[decision.selected].judgment  # type: ignore[index]
        assert chosen is not None
        score, source = chosen.score, "tier1"
        if cfg.aggregation.tier1_selection == "mean":
            score, source = statistics.fmean(s.judgment.score for s in samples if s.judgment), "tier1_mean"
        return JudgeResult(
            judge=spec.name,
            score=score,
            uncertainty=chosen.uncertainty,
            rationale=chosen.rationale,
            principles=chosen.principles,
            samples=samples,
            escalated=False,
            escalation_reasons=[],
            source=source,
            student_learning=chosen.student_learning,
            teacher_learning=chosen.teacher_learning,
            calls=calls,
        )
    prior = [s.judgment.model_dump() | {"temperature": s.temperature} for s in samples if s.judgment]
    arbiter_prompt = spec.build_prompt(inputs, cfg, prior=prior, reasons=decision.explanation, focus=focus)
    context = JudgeContext(judge=spec.name, tier="arbiter", inputs=inputs, prior=prior)
    verdict, error, records = await runtime.large.judge(arbiter_prompt, cfg.arbiter_temperature, spec.output, context)
    calls.extend(records)
    reasons = list(decision.reasons)
    if verdict is None:
        tier1_errors = "; ".join(sorted({s.error for s in samples if s.error}))
        detail = f"escalated ({', '.join(decision.explanation)}) and the arbiter failed: {error}"
        if tier1_errors and "no_valid_sample" in reasons:
            detail += f" (tier-1 errors: {tier1_errors})"
        return JudgeResult(
            judge=spec.name,
            score=None,
            uncertainty=None,
            rationale="",
            principles=[],
            samples=samples,
            escalated=True,
            escalation_reasons=reasons,
            source="none",
            error=detail,
            calls=calls,
        )
    return JudgeResult(
        judge=spec.name,
        score=verdict.score,
        uncertainty=verdict.uncertainty,
        rationale=verdict.rationale,
        principles=verdict.principles,
        samples=samples,
        escalated=True,
        escalation_reasons=reasons,
        source="arbiter",
        arbiter=verdict,
        student_learning=verdict.student_learning,
        teacher_learning=verdict.teacher_learning,
        calls=calls,
    )
