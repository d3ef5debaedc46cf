"""Calling a judge model the same way for every backend: cache, bounded concurrency, retries, re-asks, audit, cost.

- cache first, keyed by the logical request (a hit costs nothing and counts as a cache hit, not a call); a
  judgment obtained after retries or re-asks is stored under the original request (`atlas.rim.cache`);
- at most `max_concurrency` requests in flight over the whole run (one asyncio.Semaphore shared by both tiers;
  it is released while waiting to retry);
- 408 / 429 / 5xx / timeouts / dropped connections are retried under the one policy of `atlas.llm.transport`
  (exponential backoff, or the server's Retry-After when it sent one); other errors fail at once;
- a reply that is not a valid judgment is re-asked (bounded), telling the model what was wrong;
- every attempt is recorded (`CallRecord`), secrets are redacted from anything recorded or cached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from atlas.llm.transport import BackendError, Reply, as_backend_error
from atlas.rim.audit import CallRecord, Tier, Usage
from atlas.rim.backends.base import Backend, GenerationRequest, JudgeContext
from atlas.rim.cache import NullCache, ReplyCache, cache_key
from atlas.rim.config import ModelSettings, RIMConfig
from atlas.rim.prompts import reask_prompt
from atlas.rim.schema import Judgment, JudgmentError, OutputKind, parse_judgment, response_schema

logger = logging.getLogger(__name__)
T = TypeVar("T")
_EXCERPT_CHARS = 300


def collect_secrets(cfg: RIMConfig) -> list[str]:
    """Values of the API-key variables the config names: they must never reach a record, cache or output."""
    names = {m.api_key_env for m in (cfg.small_model, cfg.large_model) if m.api_key_env}
    return [v for v in (os.environ.get(n, "") for n in names) if len(v) >= 4]


def redact(text: str | None, secrets: Sequence[str]) -> str | None:
    if text is None:
        return None
    for secret in secrets:
        text = text.replace(secret, "[REDACTED]")
    return text


class ModelClient:
    """One tier's model within one scoring run."""

    def __init__(
        self,
        backend: Backend,
        settings: ModelSettings,
        tier: Tier,
        cache: ReplyCache | NullCache,
        semaphore: asyncio.Semaphore,
        usage: Usage,
        secrets: Sequence[str] = (),
    ) -> None:
        self.backend, self.settings, self.tier = backend, settings, tier
        self.cache, self.semaphore, self.usage, self.secrets = cache, semaphore, usage, list(secrets)
        self._reported: set[str] = set()

    def _key(self, prompt: str, temperature: float, kind: OutputKind, context: JudgeContext | None) -> str:
        """The logical request: backend, endpoint, model, judge, tier, output kind, temperature and prompt."""
        judge = context.judge if context is not None else ""
        return cache_key(
            self.backend.name, self.backend.endpoint, self.backend.model, judge, self.tier, kind, temperature, prompt
        )

    async def judge(
        self, prompt: str, temperature: float, kind: OutputKind, context: JudgeContext | None = None
    ) -> tuple[Judgment | None, str | None, list[CallRecord]]:
        """A validated judgment, or None and the reason; plus the record of every request made. A judgment is
        cached under the original request, whatever retries or re-asks it took, so the next run finds it."""
        key = self._key(prompt, temperature, kind, context)
        hit = self._cached(key, prompt, temperature, kind)
        if hit is not None:
            return hit
        records: list[CallRecord] = []
        current, problem = prompt, ""
        asks = self.settings.retry.invalid_json_retries + 1
        for _ in range(asks):
            result, record = await self.generate(current, temperature, kind, context)
            records.append(record)
            if result is None:
                return None, f"{self.tier} call failed: {record.error}", records
            try:
                judgment = parse_judgment(result.text, kind)
            except JudgmentError as exc:
                problem = str(exc)
                record.ok, record.error = False, f"unusable reply: {problem}"
                current = reask_prompt(prompt, problem)
                continue
            self.cache.put(
                key,
                backend=self.backend.name,
                endpoint=self.backend.endpoint,
                model=self.backend.model,
                judge=context.judge if context is not None else "",
                temperature=temperature,
                result=result,
            )
            return judgment, None, records
        return None, f"{self.tier}: no valid judgment after {asks} replies (last problem: {problem})", records

    def _cached(
        self, key: str, prompt: str, temperature: float, kind: OutputKind
    ) -> tuple[Judgment, None, list[CallRecord]] | None:
        cached = self.cache.get(key)
        if cached is None:
            return None
        try:
            judgment = parse_judgment(cached.text, kind)
        except JudgmentError:  # stored by an older schema: ask again
            return None
        self.usage.cache_hits += 1
        record = CallRecord(
            tier=self.tier,
            backend=self.backend.name,
            model=self.backend.model,
            temperature=float(temperature),
            prompt_sha256=hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
            cached=True,
            ok=True,
            reply_excerpt=cached.text[:_EXCERPT_CHARS],
        )
        return judgment, None, [record]

    async def generate(
        self, prompt: str, temperature: float, kind: OutputKind, context: JudgeContext | None
    ) -> tuple[Reply | None, CallRecord]:
        """One request to the backend under the retry policy (no cache: `judge` caches whole judgments)."""
        record = CallRecord(
            tier=self.tier,
            backend=self.backend.name,
            model=self.backend.model,
            temperature=float(temperature),
            prompt_sha256=hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
        )
        request = GenerationRequest(
            prompt=prompt,
            temperature=float(temperature),
            max_output_tokens=self.settings.max_output_tokens,
            response_schema=response_schema(kind),
            context=context,
        )
        start = time.perf_counter()
        result = await self._attempts(request, record)
        record.latency_s = round(time.perf_counter() - start, 4)
        if result is None:
            self.usage.failed_calls += 1
            return None, record
        result.text = redact(result.text, self.secrets) or ""
        cost = self.settings.cost_usd(result.input_tokens, result.output_tokens)
        record.ok, record.error = True, None
        record.input_tokens, record.output_tokens, record.cost_usd = result.input_tokens, result.output_tokens, cost
        record.reply_excerpt = result.text[:_EXCERPT_CHARS]
        self.usage.input_tokens += result.input_tokens
        self.usage.output_tokens += result.output_tokens
        self.usage.cost_usd += cost
        return result, record

    async def _attempts(self, request: GenerationRequest, record: CallRecord) -> Reply | None:
        """The request under the one retry policy (`atlas.llm.transport`); the semaphore is held per attempt only,
        so waiting to retry never blocks other calls. None when it failed (the reason is in `record.error`)."""
        timeout = self.settings.timeout_seconds

        async def attempt() -> Reply:
            record.attempts += 1
            async with self.semaphore:
                self.usage.calls += 1
                try:
                    return await asyncio.wait_for(self.backend.generate(request), timeout)
                except Exception as exc:  # a backend bug or an unexpected client error is not retried blindly
                    raise as_backend_error(exc, timeout) from None

        def retrying(error: BackendError, attempt: int, delay: float) -> None:
            self.usage.retries += 1
            record.error = redact(str(error), self.secrets)
            logger.info("%s call failed (%s); retry %d in %.2f s", self.tier, record.error, attempt, delay)

        try:
            return await self.settings.retry.policy().acall(attempt, on_retry=retrying)
        except BackendError as error:
            record.error = redact(str(error), self.secrets)
            if record.error not in self._reported:  # once per distinct error and run, not once per call
                self._reported.add(record.error or "")
                logger.warning("%s %s/%s failed: %s", self.tier, self.backend.name, self.backend.model, record.error)
            return None


class Runtime:
    """Everything one scoring run shares: the two tiers, one semaphore, one cache, one usage counter.
    Create it inside the event loop that will run the calls."""

    def __init__(self, cfg: RIMConfig, small: Backend, large: Backend, cache: ReplyCache | NullCache) -> None:
        self.cfg = cfg
        self.usage = Usage()
        semaphore = asyncio.Semaphore(cfg.max_concurrency)
        secrets = collect_secrets(cfg)
        self.small = ModelClient(small, cfg.small_model, "tier1", cache, semaphore, self.usage, secrets)
        self.large = ModelClient(large, cfg.large_model, "arbiter", cache, semaphore, self.usage, secrets)

    def _backends(self) -> list[Backend]:
        return list({id(b): b for b in (self.small.backend, self.large.backend)}.values())

    async def prepare(self) -> None:
        for backend in self._backends():
            await backend.prepare()

    async def aclose(self) -> None:
        for backend in self._backends():
            try:
                await backend.aclose()
            except Exception as exc:  # closing must never hide the results
                logger.debug("closing %s failed: %s", backend.name, exc)


def run_sync(make_coroutine: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from synchronous code, whether or not this thread already runs a loop
    (a running loop, e.g. TRL's or Jupyter's, gets the work done in a fresh thread with its own loop)."""

    async def main() -> T:
        return await make_coroutine()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="rim-sync") as pool:
        return pool.submit(asyncio.run, main()).result()
