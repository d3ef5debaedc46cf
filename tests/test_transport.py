"""The one retry policy of every model client (`atlas.llm.transport`): what is retried, how long it waits, and that
the served student and the judges agree on it."""

from __future__ import annotations

import asyncio
import time

import pytest

from atlas.llm.transport import BackendError, RetryPolicy, as_backend_error, is_retryable_status


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(408, True), (429, True), (500, True), (502, True), (503, True), (599, True),
     (400, False), (401, False), (404, False), (409, False), (422, False), (None, False)],
)  # fmt: skip
def test_retryable_statuses(status, retryable):
    assert is_retryable_status(status) is retryable


def test_exceptions_map_onto_backend_errors():
    import httpx

    assert as_backend_error(TimeoutError(), 2.5).retryable and "timed out after 2.5 s" in str(
        as_backend_error(TimeoutError(), 2.5)
    )
    assert as_backend_error(httpx.ConnectError("refused")).retryable
    assert as_backend_error(ConnectionResetError("reset")).retryable
    assert not as_backend_error(ValueError("a bug")).retryable
    error = BackendError("x", retryable=False)
    assert as_backend_error(error) is error


def _failing(errors: list[BaseException], value: str = "ok"):
    calls = []

    def fn():
        calls.append(time.perf_counter())
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return value

    return fn, calls


def test_retries_until_success_then_stops_at_a_permanent_error():
    policy = RetryPolicy(attempts=4, backoff=0.01, max_backoff=0.02)
    fn, calls = _failing([BackendError("503", retryable=True)] * 2)
    seen = []
    assert policy.call(fn, on_retry=lambda e, n, d: seen.append((str(e), n, d))) == "ok"
    assert len(calls) == 3 and [n for _, n, _ in seen] == [1, 2] and all(0.01 <= d <= 0.02 for _, _, d in seen)
    fn, calls = _failing([BackendError("401", retryable=False)])
    with pytest.raises(BackendError, match="401"):
        policy.call(fn)
    assert len(calls) == 1
    fn, calls = _failing([BackendError("500", retryable=True)] * 9)
    with pytest.raises(BackendError, match="500"):
        policy.call(fn)
    assert len(calls) == 4


def test_retry_after_is_honoured_and_capped():
    policy = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.02, max_retry_after=0.2)
    fn, calls = _failing(
        [BackendError("429", retryable=True, retry_after=0.1), BackendError("429", retryable=True, retry_after=60)]
    )
    assert policy.call(fn) == "ok"
    assert 0.09 <= calls[1] - calls[0] < 0.5 and 0.19 <= calls[2] - calls[1] < 0.6


def test_async_calls_wait_without_blocking_the_loop():
    policy = RetryPolicy(attempts=2, backoff=0.2, max_backoff=0.2)
    ticks = []

    async def ticker():
        for _ in range(5):
            ticks.append(time.perf_counter())
            await asyncio.sleep(0.02)

    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise BackendError("503", retryable=True)
        return "ok"

    async def main():
        return await asyncio.gather(policy.acall(flaky), ticker())

    assert asyncio.run(main())[0] == "ok" and len(attempts) == 2 and len(ticks) == 5
