"""Judges served by a remote API, on the clients of `atlas.llm`: Gemini (`provider: gemini`, google-genai) and any
OpenAI-compatible chat endpoint (`provider: openai`: vLLM, llama.cpp server, Ollama, OpenAI itself).

OpenAI-compatible: POST {base_url}/chat/completions with one user message; JSON mode per `response_format`
(`json_object`, `json_schema` with the judgment schema, or `none` for servers that support neither); an API key, if
the config names a variable for it, is sent as a Bearer token. A reply without a message is a retryable failure.
"""

from __future__ import annotations

from typing import Any

from atlas.llm.transport import BackendError, Reply
from atlas.rim.backends.base import Backend, GenerationRequest
from atlas.rim.config import ModelSettings

GEMINI_DEFAULT_ENDPOINT = "https://generativelanguage.googleapis.com"


class GeminiBackend(Backend):
    name = "gemini"

    def __init__(self, settings: ModelSettings) -> None:
        from atlas.llm.gemini import GeminiClient

        self.client = GeminiClient(
            settings.model,
            api_key_env=settings.api_key_env,
            base_url=settings.base_url,
            timeout=settings.timeout_seconds,
        )
        super().__init__(self.client.model)
        self.endpoint = (settings.base_url or GEMINI_DEFAULT_ENDPOINT).rstrip("/")

    async def generate(self, request: GenerationRequest) -> Reply:
        return await self.client.generate(
            request.prompt,
            temperature=request.temperature,
            max_output_tokens=request.max_output_tokens,
            response_schema=request.response_schema,
        )

    async def prepare(self) -> None:
        await self.client.prepare()

    async def aclose(self) -> None:
        await self.client.aclose()


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, settings: ModelSettings) -> None:
        from atlas.llm.openai_client import OpenAICompatClient

        super().__init__(settings.model)
        if not settings.base_url:
            raise ValueError("provider 'openai' needs base_url (e.g. http://localhost:8000/v1)")
        self.settings = settings
        self.client = OpenAICompatClient(
            settings.base_url, api_key_env=settings.api_key_env, timeout=settings.timeout_seconds, name="judge"
        )
        self.endpoint = self.client.base_url

    def _body(self, request: GenerationRequest) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": request.prompt}],
            "temperature": request.temperature,
            "max_tokens": request.max_output_tokens,
        }
        if self.settings.response_format == "json_object":
            body["response_format"] = {"type": "json_object"}
        elif self.settings.response_format == "json_schema" and request.response_schema:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "judgment", "schema": request.response_schema},
            }
        return body

    async def generate(self, request: GenerationRequest) -> Reply:
        data = await self.client.asend("/chat/completions", self._body(request))
        try:
            text = data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise BackendError(f"unexpected response body: {str(data)[:200]!r}", retryable=True) from None
        usage = data.get("usage") or {}
        return Reply(
            text=text,
            input_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )

    async def aclose(self) -> None:
        await self.client.aclose()
