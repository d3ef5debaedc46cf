"""What every remote model client shares (the served student, the OpenAI-compatible and Gemini judges): one error
type, one retry policy on tenacity, and one TLS context.

What is retried: HTTP 408, 429 and every 5xx, timeouts and dropped connections; anything else fails at once. How long
to wait: the server's Retry-After when it sent one (seconds or an HTTP date, capped at `max_retry_after`), otherwise
exponential backoff (`backoff`, doubled per retry, plus up to `backoff` of jitter, capped at `max_backoff`). Clients
turn their failures into `BackendError` (`as_backend_error` does it for the common exceptions) so the policy sees one
kind of error whatever the transport.
"""

from __future__ import annotations

import email.utils
import functools
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 429})  # and every 5xx
OnRetry = Callable[["BackendError", int, float], None]  # (error, attempt that failed, seconds until the next)


@dataclass
class Reply:
    """A chat model's answer: its text and the tokens it cost (0 when the server does not say)."""

    text: str
    input_tokens: int = 0
    output_tokens: int = 0


class BackendError(Exception):
    """A failed request to a model. `retryable` covers 408, 429, 5xx, timeouts and dropped connections;
    `retry_after` is the server's requested wait in seconds, when it gave one."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after


def is_retryable_status(status: int | None) -> bool:
    return status is not None and (status in RETRYABLE_STATUS or 500 <= status < 600)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header: a number of seconds (fractions accepted) or an HTTP date."""
    if value is None or not str(value).strip():
        return None
    text = str(value).strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def http_error(status: int, body: str, retry_after: str | None = None) -> BackendError:
    """The error for an HTTP answer >= 400 (`body`: an excerpt, already redacted)."""
    return BackendError(
        f"HTTP {status}: {body}",
        retryable=is_retryable_status(status),
        status=status,
        retry_after=parse_retry_after(retry_after),
    )


def as_backend_error(exc: BaseException, timeout: float | None = None) -> BackendError:
    """Any exception of a model call as a `BackendError`: timeouts and connection failures are retryable, anything
    else (a client bug, a redirect, an undecodable body) is not."""
    import httpx

    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, TimeoutError | httpx.TimeoutException):
        after = f" after {timeout:g} s" if timeout is not None else ""
        return BackendError(f"timed out{after}", retryable=True)
    if isinstance(exc, httpx.TransportError | ConnectionError | OSError):
        return BackendError(f"connection error: {type(exc).__name__}: {exc}", retryable=True)
    return BackendError(f"{type(exc).__name__}: {exc}", retryable=False)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries in all: 1 means no retry
    backoff: float = 1.0  # seconds before the first retry
    max_backoff: float = 30.0
    max_retry_after: float = 120.0

    def wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, BackendError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        return self._backoff(state)

    @functools.cached_property
    def _backoff(self) -> tenacity.wait.wait_base:
        return tenacity.wait_exponential_jitter(initial=self.backoff, max=self.max_backoff, jitter=self.backoff)

    def _options(self, on_retry: OnRetry | None) -> dict:
        def before_sleep(state: tenacity.RetryCallState) -> None:
            if on_retry is not None and state.outcome is not None and state.next_action is not None:
                on_retry(state.outcome.exception(), state.attempt_number, state.next_action.sleep)

        return dict(
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=self.wait,
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, BackendError) and e.retryable),
            before_sleep=before_sleep,
            reraise=True,
        )

    def call(self, fn: Callable[[], T], on_retry: OnRetry | None = None) -> T:
        """`fn()` until it succeeds, raises a non-retryable `BackendError`, or the attempts run out (then the last
        error is raised). `fn` raises `BackendError` for failures."""
        return tenacity.Retrying(**self._options(on_retry))(fn)

    async def acall(self, fn: Callable[[], Awaitable[T]], on_retry: OnRetry | None = None) -> T:
        """`call` for a coroutine function; the waits do not block the event loop."""
        return await tenacity.AsyncRetrying(**self._options(on_retry))(fn)


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """One TLS context for all HTTP clients of the process (building one costs ~0.2 s): the CA bundle from
    SSL_CERT_FILE / SSL_CERT_DIR when set, else certifi's, as google-genai and httpx do."""
    import certifi

    return ssl.create_default_context(
        cafile=os.environ.get("SSL_CERT_FILE", certifi.where()), capath=os.environ.get("SSL_CERT_DIR")
    )
