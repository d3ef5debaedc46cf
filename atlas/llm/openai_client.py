"""The one OpenAI-compatible HTTP client (vLLM, llama.cpp server, Ollama, OpenAI itself), used by the served student
(`openai_generator.OpenAIGenerator`) and by the OpenAI-compatible RIM judges.

One client per endpoint: the base URL, the bearer key read from the environment variable named by `api_key_env`
(only ever sent as a header: it is redacted from every message), TLS through the shared context, and the mapping of
every failure onto `BackendError` (HTTP >= 400 with the server's Retry-After, timeouts, dropped connections, a body
that is not a JSON object). `send` / `asend` make ONE attempt; `post` retries under a `RetryPolicy`. The async side
keeps one `httpx.AsyncClient` per event loop.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

from atlas.core.errors import AtlasError
from atlas.llm.transport import BackendError, RetryPolicy, as_backend_error, http_error, shared_ssl_context

EXCERPT_CHARS = 300


class OpenAICompatClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key_env: str | None = None,
        timeout: float = 60.0,
        max_connections: int = 8,
        name: str = "openai",
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise AtlasError(f"{name}: base_url must start with http:// or https:// (got {base_url!r})")
        self.base_url, self.api_key_env, self.timeout, self.name = base_url.rstrip("/"), api_key_env, timeout, name
        self._limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._client: httpx.Client | None = None
        self._aclients: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def api_key(self) -> str | None:
        """The key from `api_key_env` (None when no variable is named); a named but unset variable is an error."""
        if self.api_key_env is None:
            return None
        value = os.environ.get(self.api_key_env, "")
        if not value:
            raise BackendError(
                f"{self.name}: the environment variable {self.api_key_env} (api_key_env) is not set or empty",
                retryable=False,
            )
        return value

    def headers(self) -> dict[str, str]:
        key = self.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def redact(self, text: str) -> str:
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        return text.replace(key, "[REDACTED]") if key else text

    def send(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One POST; the JSON object answered, or a `BackendError`."""
        if self._client is None:
            timeout = httpx.Timeout(self.timeout)
            self._client = httpx.Client(timeout=timeout, limits=self._limits, verify=shared_ssl_context())
        try:
            response = self._client.post(self.url(path), json=payload, headers=self.headers())
        except Exception as exc:  # mapped: timeouts and connection errors are retryable, the rest not
            raise self._error(exc) from None
        return self._json(response)

    async def asend(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """`send` from async code, on this event loop's client."""
        loop = asyncio.get_running_loop()
        if loop not in self._aclients:
            self._aclients[loop] = httpx.AsyncClient(timeout=self.timeout, verify=shared_ssl_context())
        try:
            response = await self._aclients[loop].post(self.url(path), json=payload, headers=self.headers())
        except Exception as exc:
            raise self._error(exc) from None
        return self._json(response)

    def post(self, path: str, payload: dict[str, Any], policy: RetryPolicy, on_retry=None) -> dict[str, Any]:
        """`send` retried under `policy`; raises the last `BackendError` when it gives up."""
        return policy.call(lambda: self.send(path, payload), on_retry)

    def _error(self, exc: BaseException) -> BackendError:
        error = as_backend_error(exc, self.timeout)
        return BackendError(
            self.redact(str(error)), retryable=error.retryable, status=error.status, retry_after=error.retry_after
        )

    def _json(self, response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            excerpt = self.redact(response.text[:EXCERPT_CHARS])
            raise http_error(response.status_code, excerpt, response.headers.get("retry-after"))
        try:
            data = response.json()
        except ValueError:
            excerpt = self.redact(response.text[:EXCERPT_CHARS])
            raise BackendError(f"answered with a body that is not JSON: {excerpt!r}", retryable=True) from None
        if not isinstance(data, dict):
            raise BackendError("answered with JSON that is not an object", retryable=True)
        return data

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def aclose(self) -> None:
        """Close this loop's async client (and forget those of loops that are gone); the client stays usable."""
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        for loop in [lp for lp in self._aclients if lp.is_closed()]:
            self._aclients.pop(loop, None)
