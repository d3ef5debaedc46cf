"""The one async interface every judge backend implements.

A backend turns a `GenerationRequest` (prompt, temperature, token budget, JSON schema) into a `Reply` (text plus
token counts). It makes ONE attempt: it does NOT retry, cache, parse or count cost; `atlas.rim.calls.ModelClient`
does that the same way for every backend, under the retry policy of `atlas.llm.transport`. A backend signals a
failure with `atlas.llm.transport.BackendError(retryable=...)`, honouring a server's Retry-After through
`retry_after`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from atlas.llm.transport import Reply


@dataclass(frozen=True)
class JudgeContext:
    """Structured view of the request for rule-based backends (the offline judge); never part of the cache key."""

    judge: str
    tier: str
    inputs: Mapping[str, Any]
    prior: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    temperature: float
    max_output_tokens: int
    response_schema: dict[str, Any] | None = None
    context: JudgeContext | None = field(default=None, compare=False)


class Backend(ABC):
    """`name` is the provider, `endpoint` where its requests go (a server's base URL; "" for a backend that runs
    here) and `model` the model id it serves: all three are part of the cache key."""

    name: str = "backend"
    endpoint: str = ""

    def __init__(self, model: str) -> None:
        self.model = model

    @abstractmethod
    async def generate(self, request: GenerationRequest) -> Reply: ...

    async def prepare(self) -> None:
        """Set up loop-bound resources before the first (timed) request; must not raise."""
        return None

    async def aclose(self) -> None:
        """Release resources bound to the running event loop (HTTP sessions); the backend stays usable."""
        return None
