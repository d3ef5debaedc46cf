"""The offline judge: a deterministic backend that scores from verifiable signals (see `offline_rules.py`).

It answers in exactly the JSON a language-model judge must produce (principles, score, rationale, uncertainty,
and the learning fields for sessions), so it exercises the same parsing, caching and ensemble code. Tier-1
scores move by at most +-0.01 with temperature, deterministically (a hash of the prompt picks the direction),
so the ensemble sees slightly different samples without the rules ever changing their verdict; the sample at
temperature 0.5 is exact and reports the lowest uncertainty, so the "most confident" choice returns the exact
rule score whenever 0.5 is among the temperatures. As arbiter it recomputes the rules without that jitter.
Token counts are zero: no model runs.
"""

from __future__ import annotations

import hashlib
import json

from atlas.llm.transport import BackendError, Reply
from atlas.rim.backends.base import Backend, GenerationRequest
from atlas.rim.backends.offline_rules import Unsupported, Verdict, judge

JITTER = 0.02  # score moves by JITTER * (temperature - 0.5): +-0.006 across the default temperatures


def _direction(prompt: str) -> int:
    return 1 if hashlib.sha256(prompt.encode("utf-8")).digest()[0] % 2 else -1


def _rationale(verdict: Verdict, tier: str, prior_scores: list[float]) -> str:
    parts = "; ".join(f"{name} {sub:.2f} (weight {weight:g})" for name, weight, _, sub in verdict.parts)
    text = f"Rule-based offline judge (no language model): {' '.join(verdict.notes)} Principle scores: {parts}."
    if verdict.cap is not None and verdict.raw_score() > verdict.cap:
        text += f" Score capped at {verdict.cap:g} because {verdict.cap_reason}."
    elif verdict.cap_reason:
        text += f" Note: {verdict.cap_reason}."
    if tier == "arbiter":
        shown = ", ".join(f"{s:.2f}" for s in prior_scores) or "none valid"
        text += f" Arbiter: recomputed the rules without temperature jitter (tier-1 scores: {shown})."
    return text


class OfflineBackend(Backend):
    name = "offline"

    def __init__(self, model: str = "rules-v1") -> None:
        super().__init__(model)

    async def generate(self, request: GenerationRequest) -> Reply:
        context = request.context
        if context is None:
            raise BackendError("the offline judge needs the structured judge context", retryable=False)
        try:
            verdict = judge(context.judge, context.inputs)
        except Unsupported as exc:
            raise BackendError(str(exc), retryable=False) from None
        score = verdict.score()
        uncertainty = verdict.uncertainty
        if context.tier != "arbiter":
            score += JITTER * (request.temperature - 0.5) * _direction(request.prompt)
            uncertainty += 0.02 * abs(request.temperature - 0.5)
        total = sum(w for _, w, _, _ in verdict.parts) or 1.0
        principles = [
            {"name": name, "weight": round(weight / total, 6), "description": desc}
            for name, weight, desc, _ in verdict.parts
        ]
        principles[-1]["weight"] = round(1.0 - sum(p["weight"] for p in principles[:-1]), 6)
        prior_scores = [float(p["score"]) for p in context.prior if "score" in p]
        payload = {
            "principles": principles,
            "score": round(min(1.0, max(0.0, score)), 6),
            "rationale": _rationale(verdict, context.tier, prior_scores),
            "uncertainty": round(min(1.0, max(0.0, uncertainty)), 6),
            **verdict.extra,
        }
        return Reply(text=json.dumps(payload, ensure_ascii=False))
