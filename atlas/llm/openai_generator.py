"""Generation from a model served behind an OpenAI-compatible HTTP API (vLLM, llama.cpp server, Ollama, ...).

`OpenAIGenerator` has the interface of `atlas.llm.generation.HFGenerator`, so the protocol can use a served student:

- a chat prompt (list of messages) goes to `POST {base_url}/chat/completions` and the server applies its own chat
  template; an already rendered string goes to `POST {base_url}/completions` and is used as-is;
- `num_samples > 1` asks for `n` choices in one request; when a server returns fewer, each missing sample is asked
  for in its own request. Every request carries a seed derived from (seed, prompt index, sample index), so repeated
  prompts get independent samples and a rerun with the same seed asks for exactly the same thing (whether the
  server then samples deterministically is up to the server: vLLM does);
- at most `max_concurrency` requests are in flight (a bounded thread pool over one `OpenAICompatClient`);
- failures are retried under the one policy of `atlas.llm.transport` (408, 429, 5xx, timeouts, dropped connections;
  up to `max_retries` retries, after the server's Retry-After when it sent one; every wait is capped at 60 s); other
  errors fail at once with an `AtlasError`;
- `finish_reason == "length"` marks a generation as truncated; token counts come from per-choice counts when the
  server gives them, else from `usage.completion_tokens` (split across the `n` choices in proportion to their
  estimated lengths; a truncated choice has exactly `max_new_tokens`);
- `logprob` scores teacher-forced targets through `/completions` with `echo=True, logprobs=1, max_tokens=0`
  (supported by vLLM); a server that does not return prompt log-probabilities raises an `AtlasError`.

The API key is read from the environment variable named by `api_key_env` and only ever sent as a bearer header:
it is never logged and is redacted from error messages (`OpenAICompatClient` does both).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any, TypeVar

from atlas.core import progress
from atlas.core.errors import AtlasError
from atlas.llm.generation import Generation, Messages, Prompt
from atlas.llm.openai_client import OpenAICompatClient
from atlas.llm.transport import BackendError, RetryPolicy

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

MAX_WAIT_SECONDS = 60.0  # cap on any wait between two attempts (backoff or Retry-After)

# Used by `render` only when no tokenizer is given: the ChatML layout of SmolLM2 and Qwen models.
_CHATML_TURN = "<|im_start|>{role}\n{content}<|im_end|>\n"
_CHATML_GENERATION_PROMPT = "<|im_start|>assistant\n"


class OpenAIGenerator:
    """A `Generator` backed by an OpenAI-compatible server (see the module docstring for the exact behaviour)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        max_concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 4,
        tokenizer=None,
        name: str = "student",
        *,
        backoff: float = 0.5,
    ):
        if max_concurrency < 1:
            raise AtlasError(f"{name}: max_concurrency must be at least 1 (got {max_concurrency})")
        if max_retries < 0:
            raise AtlasError(f"{name}: max_retries must be 0 or more (got {max_retries})")
        self.model, self.tokenizer, self.name = model, tokenizer, name
        self.max_concurrency, self.timeout, self.max_retries = max_concurrency, timeout, max_retries
        self.policy = RetryPolicy(
            attempts=max_retries + 1, backoff=backoff, max_backoff=MAX_WAIT_SECONDS, max_retry_after=MAX_WAIT_SECONDS
        )
        self.calls = 0
        self.http = OpenAICompatClient(
            base_url, api_key_env=api_key_env, timeout=timeout, max_connections=max_concurrency, name=name
        )
        self.base_url = self.http.base_url
        try:
            self.http.api_key()  # a missing key fails here, once, not in every request
        except BackendError as exc:
            raise AtlasError(str(exc)) from None
        self._warned_chatml = False

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> OpenAIGenerator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def render(self, prompt: Prompt) -> str:
        """The prompt as one string: with the tokenizer's chat template when a tokenizer was given (it should be the
        served model's), else in ChatML (the template of SmolLM2 and Qwen; a warning says so once)."""
        if isinstance(prompt, str):
            return prompt
        if self.tokenizer is not None:
            return self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if not self._warned_chatml:
            log.warning("%s: no tokenizer given, rendering chat prompts as ChatML", self.name)
            self._warned_chatml = True
        turns = "".join(_CHATML_TURN.format(role=m["role"], content=m["content"]) for m in prompt)
        return turns + _CHATML_GENERATION_PROMPT

    def count_tokens(self, text: str) -> int:
        """Tokens of `text` under the given tokenizer; without one, an approximation: the number of whitespace-
        separated words (subword tokenizers usually give 1-1.5x more)."""
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return len(text.split())

    def generate(
        self,
        prompts: list[Prompt],
        *,
        max_new_tokens: int,
        temperature: float,
        num_samples: int = 1,
        seed: int = 0,
        desc: str | None = None,
    ) -> list[list[Generation]]:
        """`num_samples` generations per prompt, in prompt order; greedy when temperature is 0."""
        if num_samples < 1:
            raise AtlasError(f"{self.name}: num_samples must be at least 1 (got {num_samples})")

        def one_prompt(index: int, prompt: Prompt) -> list[Generation]:
            return self._sample(index, prompt, max_new_tokens, temperature, num_samples, seed)

        out = self._map_bounded(one_prompt, prompts, desc or f"{self.name}: generate")
        self.calls += sum(len(g) for g in out)
        return out

    def logprob(self, prompts: list[Prompt], targets: list[str], desc: str | None = None) -> list[float]:
        """Sum of log p(target tokens | prompt) as scored by the server (a token that spans the prompt/target
        boundary counts as a target token)."""
        pairs = [(self.render(p), t) for p, t in zip(prompts, targets, strict=True)]
        return self._map_bounded(lambda _, pair: self._score(*pair), pairs, desc or f"{self.name}: score")

    def _sample(
        self, index: int, prompt: Prompt, max_new_tokens: int, temperature: float, num_samples: int, seed: int
    ) -> list[Generation]:
        got = self._request(prompt, max_new_tokens, temperature, num_samples, request_seed(seed, index, 0))
        got = got[:num_samples]
        if len(got) < num_samples:
            log.info("%s: server returned %d of n=%d samples; asking one by one", self.name, len(got), num_samples)
        while len(got) < num_samples:
            more = self._request(prompt, max_new_tokens, temperature, 1, request_seed(seed, index, len(got)))
            if not more:
                raise AtlasError(f"{self.name}: {self.base_url} returned no choices for prompt {index + 1}")
            got.extend(more[:1])
        return got

    def _request(self, prompt: Prompt, max_new_tokens: int, temperature: float, n: int, seed: int) -> list[Generation]:
        payload: dict[str, Any] = dict(model=self.model, max_tokens=max_new_tokens, temperature=temperature, n=n)
        payload.update(top_p=1.0, seed=seed)  # top_p=1: plain temperature sampling, as HFGenerator does
        if isinstance(prompt, str):
            path, payload["prompt"] = "/completions", prompt
        else:
            path, payload["messages"] = "/chat/completions", _check_messages(prompt, self.name)
        data = self._post(path, payload)
        choices = sorted(_choices(data, self._url(path)), key=lambda c: c.get("index", 0))
        texts = [_choice_text(c) for c in choices]
        truncated = [c.get("finish_reason") == "length" for c in choices]
        tokens = self._token_counts(choices, texts, truncated, data.get("usage"), max_new_tokens)
        return [Generation(text=t, tokens=k, truncated=tr) for t, k, tr in zip(texts, tokens, truncated, strict=True)]

    def _token_counts(
        self, choices: list[dict], texts: list[str], truncated: list[bool], usage: Any, max_new_tokens: int
    ) -> list[int]:
        """Per-choice counts when the server gives them; else `usage.completion_tokens` split over the choices: a
        truncated choice has exactly `max_new_tokens`, the others share the rest in proportion to their estimated
        lengths (`count_tokens`); without usage, the estimates themselves."""
        given = [_choice_token_count(c) for c in choices]
        counts = [max_new_tokens if k is None and cut else k for k, cut in zip(given, truncated, strict=True)]
        free = [i for i, k in enumerate(counts) if k is None]
        estimates = [min(self.count_tokens(texts[i]), max_new_tokens) for i in free]
        total = usage.get("completion_tokens") if isinstance(usage, dict) else None
        left = total - sum(k for k in counts if k is not None) if isinstance(total, int) else -1
        for i, share in zip(free, _apportion(left, estimates) if left >= 0 else estimates, strict=True):
            counts[i] = share
        return counts  # type: ignore[return-value]

    def _score(self, prompt: str, target: str) -> float:
        payload = dict(model=self.model, prompt=prompt + target, max_tokens=0, echo=True, logprobs=1, temperature=0.0)
        url = self._url("/completions")
        choices = _choices(self._post("/completions", payload), url)
        logprobs = choices[0].get("logprobs") if choices else None
        values = logprobs.get("token_logprobs") if isinstance(logprobs, dict) else None
        if not isinstance(values, list) or not values:
            raise AtlasError(
                f"{self.name}: {url} returned no prompt log-probabilities for echo=True, logprobs=1, max_tokens=0; "
                "log-likelihood scoring needs a server that supports it (vLLM does)"
            )
        count = self._target_token_count(prompt, target, logprobs, len(values), url)
        total = 0.0
        for position in range(len(values) - count, len(values)):
            value = values[position]
            if value is None and position == 0:
                continue  # the first token of the text has nothing to be conditioned on
            if not isinstance(value, int | float):
                raise AtlasError(f"{self.name}: {url} returned no log-probability for echoed token {position + 1}")
            total += float(value)
        return total

    def _target_token_count(self, prompt: str, target: str, logprobs: dict, n_values: int, url: str) -> int:
        """How many of the echoed tokens cover target characters: from the tokenizer's offsets when a tokenizer
        was given (exact for the served model), else from the server's `text_offset`."""
        boundary = len(prompt)
        if self.tokenizer is not None:
            enc = self.tokenizer(prompt + target, add_special_tokens=False, return_offsets_mapping=True)
            count = sum(1 for _, end in enc["offset_mapping"] if end > boundary)
        else:
            offsets = logprobs.get("text_offset")
            if not _valid_offsets(offsets, n_values):
                raise AtlasError(
                    f"{self.name}: {url} returned no usable text_offset with its log-probabilities; pass the served "
                    "model's tokenizer to OpenAIGenerator(tokenizer=...) so target tokens can be counted"
                )
            ends = list(offsets[1:]) + [len(prompt) + len(target)]
            count = sum(1 for end in ends if end > boundary)
        return min(count, n_values)

    def _url(self, path: str) -> str:
        return self.http.url(path)

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One JSON POST with bounded retries; a JSON object back, or an `AtlasError` saying what went wrong."""
        url = self._url(path)

        def warn(error: BackendError, attempt: int, delay: float) -> None:
            attempts = self.policy.attempts
            log.warning(
                "%s: POST %s attempt %d/%d: %s; retrying in %.2f s", self.name, url, attempt, attempts, error, delay
            )

        try:
            return self.http.post(path, payload, self.policy, on_retry=warn)
        except BackendError as exc:
            if not exc.retryable:
                raise AtlasError(f"{self.name}: POST {url} failed: {exc}") from None
            raise AtlasError(
                f"{self.name}: POST {url} failed after {self.policy.attempts} attempts "
                f"(max_retries={self.max_retries}): {exc}"
            ) from None

    def _map_bounded(self, fn: Callable[[int, T], R], items: Sequence[T], desc: str) -> list[R]:
        """`fn(index, item)` for every item on at most `max_concurrency` threads; results in input order. The first
        error cancels what has not started yet and is raised."""
        if not items:
            return []
        results: list[Any] = [None] * len(items)
        workers = min(self.max_concurrency, len(items))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"{self.name}-http") as pool:
            futures = {pool.submit(fn, i, item): i for i, item in enumerate(items)}
            try:
                with progress.bar(desc, len(items), "prompt") as advance:
                    for future in as_completed(futures):
                        results[futures[future]] = future.result()
                        advance(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return results


def request_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """A stable 31-bit seed per (run seed, prompt, sample), so distinct requests do not share a sampling seed."""
    digest = hashlib.blake2b(f"{seed}/{prompt_index}/{sample_index}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") >> 1


def _check_messages(messages: Messages, name: str) -> Messages:
    for position, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise AtlasError(f"{name}: chat message {position} needs 'role' and 'content' keys")
    return messages


def _choices(data: dict[str, Any], url: str) -> list[dict[str, Any]]:
    choices = data.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise AtlasError(f"{url} answered without a 'choices' list")
    return choices


def _choice_text(choice: dict[str, Any]) -> str:
    if "message" in choice:
        message = choice.get("message") or {}
        return message.get("content") or ""
    return choice.get("text") or ""


def _choice_token_count(choice: dict[str, Any]) -> int | None:
    """A per-choice completion token count, when the server provides one (not part of the OpenAI schema)."""
    usage = choice.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        return usage["completion_tokens"]
    if isinstance(choice.get("completion_tokens"), int):
        return choice["completion_tokens"]
    if isinstance(choice.get("token_ids"), list):
        return len(choice["token_ids"])
    return None


def _apportion(total: int, weights: list[int]) -> list[int]:
    """Split `total` into integers proportional to `weights` (largest remainder; equal split if all are 0)."""
    if not weights:
        return []
    weights = [max(0, w) for w in weights]
    if sum(weights) == 0:
        weights = [1] * len(weights)
    exact = [total * w / sum(weights) for w in weights]
    shares = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - shares[i], reverse=True)
    for i in order[: total - sum(shares)]:
        shares[i] += 1
    return shares


def _valid_offsets(offsets: Any, n_values: int) -> bool:
    if not isinstance(offsets, list) or len(offsets) != n_values or not all(isinstance(o, int) for o in offsets):
        return False
    return all(a <= b for a, b in zip(offsets, offsets[1:], strict=False))
