"""The Gemini client, on the official `google-genai` SDK (async client, JSON mode with a response schema).

- API key: read from the environment variable named by `api_key_env` (default GEMINI_API_KEY) when the client is
  built; it is sent in a header by the SDK and never stored by us.
- `base_url` (e.g. a proxy, or a local fake server in tests) goes through `HttpOptions(base_url=...)`.
- The SDK's own retries are switched off (`HttpRetryOptions(attempts=1)`): the caller retries under the one policy of
  `atlas.llm.transport`, as for every client; errors are mapped to `BackendError` with the HTTP status and the
  server's requested delay (Retry-After header, or the RetryInfo `retryDelay` Gemini puts in 429 bodies).
- Usage: input = prompt tokens; output = candidate tokens + thinking tokens (both are billed as output).
The SDK holds HTTP sessions per event loop, so one client is kept per loop (shared by both tiers) and closed by
`aclose()` at the end of each scoring run; the request timeout is set per request.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from atlas.llm.transport import BackendError, Reply, is_retryable_status, parse_retry_after, shared_ssl_context

DEFAULT_KEY_ENV = "GEMINI_API_KEY"
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


def _retry_delay(exc: Any) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is not None:
        delay = parse_retry_after(headers.get("retry-after"))
        if delay is not None:
            return delay
    details = getattr(exc, "details", None)
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        match = _DELAY.match(str(item.get("retryDelay", ""))) if isinstance(item, dict) else None
        if match:
            return float(match.group(1))
    return None


def _transport_errors() -> tuple[type[BaseException], ...]:
    import httpx

    errors: list[type[BaseException]] = [httpx.TransportError]
    try:
        import aiohttp

        errors.append(aiohttp.ClientError)
    except ImportError:  # the SDK falls back to httpx
        pass
    return tuple(errors)


# One SDK client per (event loop, API key variable, base URL), shared by both tiers.
_CLIENTS: dict[tuple[asyncio.AbstractEventLoop, str, str | None], Any] = {}


class GeminiClient:
    """One Gemini model: `generate` makes ONE request (no retries) and answers a `Reply` or raises `BackendError`."""

    def __init__(
        self, model: str, *, api_key_env: str | None = None, base_url: str | None = None, timeout: float = 60.0
    ) -> None:
        import google.genai  # noqa: F401  (seconds to import: do it now, not inside a timed request)

        self.model = model.removeprefix("gemini/")
        self.key_env = api_key_env or DEFAULT_KEY_ENV
        self.base_url = base_url
        self.timeout = timeout

    def _key(self) -> tuple[asyncio.AbstractEventLoop, str, str | None]:
        return (asyncio.get_running_loop(), self.key_env, self.base_url)

    def _client(self) -> Any:
        key = self._key()
        if key in _CLIENTS:
            return _CLIENTS[key]
        from google import genai
        from google.genai import types

        api_key = os.environ.get(self.key_env, "")
        if not api_key:
            raise BackendError(
                f"environment variable {self.key_env} is not set (it must hold the Gemini API key)", retryable=False
            )
        http_options = types.HttpOptions(
            base_url=self.base_url,
            retry_options=types.HttpRetryOptions(attempts=1),
            client_args={"verify": shared_ssl_context()},
            async_client_args={"ssl": shared_ssl_context(), "verify": shared_ssl_context()},
        )
        _CLIENTS[key] = genai.Client(api_key=api_key, vertexai=False, http_options=http_options)
        return _CLIENTS[key]

    async def prepare(self) -> None:
        try:
            self._client()
        except BackendError:  # reported by each request instead
            pass

    async def generate(
        self, prompt: str, *, temperature: float, max_output_tokens: int, response_schema: dict[str, Any] | None
    ) -> Reply:
        from google.genai import errors, types

        client = self._client()
        config = types.GenerateContentConfig(
            temperature=temperature,
            max_output_tokens=max_output_tokens,
            response_mime_type="application/json",
            response_json_schema=response_schema,
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            http_options=types.HttpOptions(timeout=int(self.timeout * 1000)),
        )
        try:
            response = await client.aio.models.generate_content(model=self.model, contents=prompt, config=config)
        except errors.APIError as exc:
            status = exc.code
            raise BackendError(
                f"Gemini API error {status} {exc.status or ''}: {str(exc.message or '')[:300]}".strip(),
                retryable=is_retryable_status(status),
                status=status,
                retry_after=_retry_delay(exc),
            ) from None
        except _transport_errors() as exc:
            raise BackendError(f"Gemini transport error: {type(exc).__name__}: {exc}", retryable=True) from None
        usage = response.usage_metadata
        input_tokens = (usage.prompt_token_count or 0) if usage else 0
        output_tokens = ((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)) if usage else 0
        text = response.text
        if not text:
            reason = response.candidates[0].finish_reason if response.candidates else None
            text = f"(no text in the reply; finish reason {reason})"
        return Reply(text=text, input_tokens=input_tokens, output_tokens=output_tokens)

    async def aclose(self) -> None:
        client = _CLIENTS.pop(self._key(), None)
        if client is not None:
            await client.aio.aclose()
        for stale in [k for k in _CLIENTS if k[0].is_closed()]:
            _CLIENTS.pop(stale, None)
