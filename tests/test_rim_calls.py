"""Calling judge models: retries and backoff, Retry-After, timeouts, bounded concurrency, cache, redaction."""

from __future__ import annotations

import asyncio
import time

import pytest

from atlas.llm.transport import BackendError, parse_retry_after
from atlas.rim.audit import Usage
from atlas.rim.backends.scripted import ScriptedBackend, judgment_json
from atlas.rim.cache import ReplyCache, cache_key
from atlas.rim.calls import ModelClient, run_sync
from atlas.rim.config import ModelSettings
from tests.rim_helpers import GOOD_ROW, constant_backend, make_reward

FAST_RETRY = {"attempts": 3, "backoff_seconds": 0.01, "max_backoff_seconds": 0.02}


def client(backend, tmp_path, secrets=(), **settings):
    cfg = ModelSettings(retry=FAST_RETRY, **settings)
    usage = Usage()

    async def make():
        return ModelClient(
            backend, cfg, "tier1", ReplyCache(tmp_path / "c.sqlite"), asyncio.Semaphore(4), usage, secrets
        )

    return make, usage


def scripted_sequence(*replies):
    it = iter(replies)
    return ScriptedBackend(lambda request: next(it))


@pytest.mark.parametrize(
    ("replies", "ok", "calls", "retries"),
    [
        ([BackendError("429", retryable=True, status=429), judgment_json(0.5)], True, 2, 1),
        ([BackendError("503", retryable=True, status=503)] * 2 + [judgment_json(0.5)], True, 3, 2),
        ([BackendError("500", retryable=True, status=500)] * 3, False, 3, 2),  # attempts exhausted
        ([BackendError("401", retryable=False, status=401), judgment_json(0.5)], False, 1, 0),
        ([ConnectionResetError("reset"), judgment_json(0.5)], True, 2, 1),
        ([ValueError("backend bug"), judgment_json(0.5)], False, 1, 0),
    ],
)
def test_retry_policy(tmp_path, replies, ok, calls, retries):
    make, usage = client(scripted_sequence(*replies), tmp_path)

    async def go():
        return await (await make()).judge("prompt", 0.5, "judgment")

    judgment, error, records = asyncio.run(go())
    assert (judgment is not None) is ok
    assert (usage.calls, usage.retries) == (calls, retries)
    assert records[0].attempts == calls
    if not ok:
        assert error and records[0].error


def test_retry_after_is_honoured(tmp_path):
    backend = scripted_sequence(BackendError("429", retryable=True, status=429, retry_after=0.3), judgment_json(0.5))
    make, _ = client(backend, tmp_path)

    async def go():
        start = time.perf_counter()
        await (await make()).judge("prompt", 0.5, "judgment")
        return time.perf_counter() - start

    assert asyncio.run(go()) >= 0.3  # the 0.01 s backoff was replaced by the server's 0.3 s


@pytest.mark.parametrize(
    ("header", "expected"),
    [("2", 2.0), ("0.25", 0.25), ("-3", 0.0), ("soon", None), (None, None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_parse_retry_after(header, expected):
    assert parse_retry_after(header) == expected


def test_timeouts_are_retried(tmp_path):
    calls = []

    async def slow_then_fast(request):
        calls.append(time.perf_counter())
        if len(calls) == 1:
            await asyncio.sleep(5)
        return judgment_json(0.6)

    make, usage = client(ScriptedBackend(slow_then_fast), tmp_path, timeout_seconds=0.2)

    async def go():
        return await (await make()).judge("prompt", 0.5, "judgment")

    judgment, _, records = asyncio.run(go())
    assert judgment.score == 0.6 and usage.retries == 1 and records[0].attempts == 2
    assert calls[1] - calls[0] < 1.0


def test_cache_hit_makes_no_call_and_costs_nothing(tmp_path):
    backend = constant_backend(0.7)
    make, usage = client(backend, tmp_path, input_price_per_million=1.0, output_price_per_million=2.0)

    async def go():
        c = await make()
        first = await c.judge("same prompt", 0.2, "judgment")
        second = await c.judge("same prompt", 0.2, "judgment")
        third = await c.judge("same prompt", 0.8, "judgment")  # another temperature is another key
        return first, second, third

    first, second, third = asyncio.run(go())
    assert first[0] == second[0]
    assert (usage.calls, usage.cache_hits) == (2, 1)
    assert second[2][0].cached and second[2][0].cost_usd == 0
    assert first[2][0].cost_usd == pytest.approx((first[2][0].input_tokens + 2 * first[2][0].output_tokens) / 1e6)


def test_a_reasked_judgment_is_cached_under_the_original_request(tmp_path):
    """Issue 13 item 13: the invalid first reply is not stored, the valid answer to the re-ask is, under the key of
    the request that was made (so the next run asks nothing)."""
    backend = scripted_sequence("nope", judgment_json(0.5), "never asked")
    make, usage = client(backend, tmp_path)

    async def go():
        c = await make()
        first = await c.judge("p", 0.5, "judgment")
        second = await c.judge("p", 0.5, "judgment")
        return first, second

    (first, _, records), (second, _, again) = asyncio.run(go())
    assert first.score == second.score == 0.5 and len(records) == 2 and not records[0].ok
    assert again[0].cached and usage.calls == 2 and usage.cache_hits == 1
    assert len(ReplyCache(tmp_path / "c.sqlite")) == 1


@pytest.mark.parametrize(
    ("part", "changed"),
    [(0, "openai"), (1, "http://127.0.0.1:9/v1"), (2, "other-model"), (3, "helpfulness"), (4, "arbiter"),
     (5, "session"), (6, 0.2), (7, "another trajectory")],
)  # fmt: skip
def test_every_part_of_the_logical_request_is_in_the_key(part, changed):
    parts = ["gemini", "http://127.0.0.1:8/v1", "m", "accuracy", "tier1", "judgment", 0.5, "trajectory"]
    assert cache_key(*parts) == cache_key(*parts)
    assert cache_key(*parts) != cache_key(*(parts[:part] + [changed] + parts[part + 1 :]))


def test_secrets_are_redacted_everywhere(tmp_path):
    secret = "sk-very-secret-123"
    echo = ScriptedBackend(lambda r: judgment_json(0.5, rationale=f"the key is {secret}"))
    make, _ = client(echo, tmp_path, secrets=[secret])
    fail = ScriptedBackend(lambda r: BackendError(f"401 bad key {secret}", retryable=False))
    make_fail, _ = client(fail, tmp_path, secrets=[secret])

    async def go():
        ok = await (await make()).judge("p", 0.5, "judgment")
        bad = await (await make_fail()).judge("q", 0.5, "judgment")
        return ok, bad

    (judgment, _, records), (_, error, bad_records) = asyncio.run(go())
    assert secret not in judgment.rationale and "[REDACTED]" in judgment.rationale
    assert secret not in records[0].reply_excerpt and secret not in error and secret not in bad_records[0].error
    assert secret.encode() not in (tmp_path / "c.sqlite").read_bytes()


def test_concurrency_is_bounded_and_parallel(tmp_path):
    backend = constant_backend(0.8, latency=0.05)
    reward = make_reward(tmp_path, backend, max_concurrency=10, active_judges={"accuracy": True})
    rows = [GOOD_ROW | {"question": f"q{i}"} for i in range(10)]
    start = time.perf_counter()
    reward.score_batch_sync(rows)
    elapsed = time.perf_counter() - start
    assert backend.max_in_flight == 10 and len(backend.requests) == 30
    assert elapsed < 0.75  # sequential would be 30 x 0.05 = 1.5 s; ideal 0.15 s


def test_run_sync_inside_a_running_loop():
    async def value():
        await asyncio.sleep(0)
        return 42

    async def caller():  # e.g. a notebook or TRL's loop thread calling synchronous evaluation code
        return run_sync(value)

    assert run_sync(value) == 42
    assert asyncio.run(caller()) == 42


# -- issue 16 item 12: a corrupt judge cache is found when the stage starts, named, and moved aside ---------------


def test_a_corrupt_cache_is_moved_aside_and_named(tmp_path, caplog):
    path = tmp_path / "rim_cache.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level("WARNING", logger="atlas.rim.cache"):
        cache = ReplyCache(path)
    [aside] = list(tmp_path.glob("rim_cache.sqlite.corrupt-*"))
    assert aside.read_bytes().startswith(b"this is not a database")
    assert str(path) in caplog.text and str(aside) in caplog.text
    assert len(cache) == 0  # a fresh, working cache in its place


def test_the_evaluate_stage_checks_its_cache_before_any_work(project, monkeypatch, caplog):
    from atlas.config import load_config
    from atlas.ops import runner

    cfg = load_config()
    assert cfg.evaluation.rim
    cache = project / ".atlas" / "rim_cache.sqlite"
    cache.parent.mkdir(exist_ok=True)
    cache.write_bytes(b"garbage" * 100)
    seen = {}

    def fake_evaluate(cfg):  # stands in for the generation work: the cache must already be sorted out
        seen["moved"] = not cache.read_bytes().startswith(b"garbage")
        raise RuntimeError("stop here")

    monkeypatch.setattr(runner.MODULES["evaluate"], "run", fake_evaluate)
    monkeypatch.setattr(runner, "required_inputs", lambda cfg, name: [])  # no trained models here: not the point
    with caplog.at_level("WARNING", logger="atlas.rim.cache"), pytest.raises(RuntimeError, match="stop here"):
        runner.run_stage(cfg, "evaluate")
    assert seen == {"moved": True} and "rim_cache.sqlite is not a readable SQLite database" in caplog.text
