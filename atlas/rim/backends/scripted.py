"""A programmable backend for tests and benchmarks: a function decides each reply, with optional latency.

It also measures how many requests were in flight at once, so concurrency limits can be checked.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Callable
from typing import Any

from atlas.llm.transport import Reply
from atlas.rim.backends.base import Backend, GenerationRequest

Scripted = str | Reply | BaseException  # what a responder may return
Responder = Callable[[GenerationRequest], Any]


def judgment_json(
    score: float,
    uncertainty: float = 0.1,
    rationale: str = "scripted judgment",
    principles: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> str:
    principles = principles or [
        {"name": "Correctness", "weight": 0.7, "description": "The answer is right."},
        {"name": "Clarity", "weight": 0.3, "description": "The answer is easy to check."},
    ]
    return json.dumps(
        {"principles": principles, "score": score, "rationale": rationale, "uncertainty": uncertainty, **extra}
    )


class ScriptedBackend(Backend):
    def __init__(
        self, responder: Responder, model: str = "scripted-model", latency: float = 0.0, name: str = "scripted"
    ) -> None:
        super().__init__(model)
        self.name = name
        self.responder = responder
        self.latency = latency
        self.requests: list[GenerationRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def generate(self, request: GenerationRequest) -> Reply:
        self.requests.append(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency:
                await asyncio.sleep(self.latency)
            reply = self.responder(request)
            if inspect.isawaitable(reply):
                reply = await reply
        finally:
            self.in_flight -= 1
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, Reply):
            return reply
        return Reply(text=str(reply), input_tokens=len(request.prompt) // 4, output_tokens=len(reply) // 4)
