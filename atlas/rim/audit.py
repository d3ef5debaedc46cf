"""The audit of what the ensemble did: every backend call, every tier-1 sample, each judge's decision.

All of them serialise to plain JSON (`to_dict`). None of them ever holds a prompt's secrets: prompts are
recorded by their SHA-256 only, and error texts are redacted before they get here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from atlas.rim.schema import Judgment, Principle

Tier = Literal["tier1", "arbiter"]


@dataclass
class CallRecord:
    """One logical request to a judge model (a cache hit is a call record with `cached=True` and no tokens)."""

    tier: Tier
    backend: str
    model: str
    temperature: float
    prompt_sha256: str
    cached: bool = False
    attempts: int = 0
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    ok: bool = False
    error: str | None = None
    reply_excerpt: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Sample:
    """A tier-1 judgment at one temperature, or the reason there is none."""

    temperature: float
    judgment: Judgment | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperature": self.temperature,
            "judgment": self.judgment.model_dump() if self.judgment else None,
            "error": self.error,
        }


@dataclass
class Usage:
    """Counters for one scoring run: backend calls actually made, cache hits, tokens and cost."""

    calls: int = 0
    cache_hits: int = 0
    retries: int = 0
    failed_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "tokens": self.tokens}


@dataclass
class JudgeResult:
    """One judge's final answer for one trajectory, with the evidence behind it.

    `score is None` means the judge could not score (every sample failed and the arbiter failed, or the arbiter
    failed after an escalation); `error` says why. A failed judgment is never replaced by a made-up number.
    """

    judge: str
    score: float | None
    uncertainty: float | None
    rationale: str
    principles: list[Principle]
    samples: list[Sample]
    escalated: bool
    escalation_reasons: list[str]
    source: Literal["tier1", "tier1_mean", "arbiter", "none"]
    arbiter: Judgment | None = None
    error: str | None = None
    student_learning: str | None = None
    teacher_learning: str | None = None
    calls: list[CallRecord] = field(default_factory=list)

    def to_dict(self, include_calls: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "judge": self.judge,
            "score": self.score,
            "uncertainty": self.uncertainty,
            "rationale": self.rationale,
            "principles": [p.model_dump() for p in self.principles],
            "escalated": self.escalated,
            "escalation_reasons": list(self.escalation_reasons),
            "source": self.source,
            "error": self.error,
            "samples": [s.to_dict() for s in self.samples],
            "arbiter": self.arbiter.model_dump() if self.arbiter else None,
        }
        if self.student_learning is not None or self.teacher_learning is not None:
            out["student_learning"] = self.student_learning
            out["teacher_learning"] = self.teacher_learning
        if include_calls:
            out["calls"] = [c.to_dict() for c in self.calls]
        return out
