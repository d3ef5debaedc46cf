"""Generation backends: `HFGenerator` on a random tiny Qwen3, `OpenAIGenerator` against a local fake OpenAI server.

The fake server (Starlette + uvicorn on a free port of 127.0.0.1, in a thread) answers deterministically: a reply is
3-8 "words" derived from a hash of (prompt, seed, choice index), one word = one token, cut at `max_tokens` with
`finish_reason="length"`. Tests script failures (HTTP status, Retry-After, slow answers) per request.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from atlas.config import ModelSpec
from atlas.core.errors import AtlasError
from atlas.llm.generation import HFGenerator
from atlas.llm.openai_generator import OpenAIGenerator, request_seed
from atlas.llm.transport import parse_retry_after
from atlas.teaching.protocol import student_messages

# -- HFGenerator on a tiny random model -----------------------------------------------------------------------------

PROMPTS_HF = [
    student_messages("Ann has 4 apples and buys 3 more. How many apples does she have?", few_shot=False),
    "<|im_start|>user\nhow many pens<|im_end|>\n<|im_start|>assistant\n",
    [{"role": "user", "content": "Find 12 + 30."}],
    "the total cost of two boxes is",
    student_messages("A road is 120 m long. Trees stand every 10 m. How many gaps?", "Divide by 10.", few_shot=False),
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    from atlas.llm.models import load_causal_lm, load_tokenizer, materialize

    spec = ModelSpec(source="tiny", seed=3)
    path = materialize(spec, tmp_path_factory.mktemp("models") / "tiny")
    model = load_causal_lm(path, spec)
    model.eval()
    return model, load_tokenizer(path)


@pytest.fixture
def tiny(tiny_model):
    """One torch thread while a test runs: a 64-wide model gains nothing from more, and on a busy 2-core machine
    two threads contend so badly that these tests take 10x longer."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield tiny_model
    finally:
        torch.set_num_threads(threads)


def hf(tiny, batch_size: int = 8) -> HFGenerator:
    model, tokenizer = tiny
    return HFGenerator(model, tokenizer, batch_size=batch_size, name="tiny")


def test_batched_greedy_matches_one_at_a_time(tiny):
    batched = hf(tiny, batch_size=8).generate(PROMPTS_HF, max_new_tokens=10, temperature=0.0)
    single = hf(tiny, batch_size=1).generate(PROMPTS_HF, max_new_tokens=10, temperature=0.0)
    assert batched == single
    assert len({g[0].text for g in batched}) > 1  # different prompts, different continuations


def test_seeded_sampling_is_reproducible(tiny):
    gen = hf(tiny)
    first = gen.generate(PROMPTS_HF, max_new_tokens=6, temperature=1.0, num_samples=2, seed=7)
    again = gen.generate(PROMPTS_HF, max_new_tokens=6, temperature=1.0, num_samples=2, seed=7)
    other = gen.generate(PROMPTS_HF, max_new_tokens=6, temperature=1.0, num_samples=2, seed=8)
    assert first == again
    assert first != other
    assert all(g[0].text != g[1].text for g in first)  # two samples of one prompt differ


@pytest.mark.parametrize(("num_samples", "n_prompts"), [(1, 5), (3, 2), (4, 1)])
def test_num_samples_shape_and_call_count(tiny, num_samples, n_prompts):
    gen = hf(tiny, batch_size=3)
    out = gen.generate(PROMPTS_HF[:n_prompts], max_new_tokens=4, temperature=0.7, num_samples=num_samples)
    assert [len(g) for g in out] == [num_samples] * n_prompts
    assert gen.calls == num_samples * n_prompts


@pytest.fixture
def eos_biased(tiny):
    """The tiny model with its end-of-sequence logit raised, so sampled generations end at varied lengths."""
    import torch

    model, tokenizer = tiny
    bias = torch.zeros(model.config.vocab_size)
    bias[tokenizer.eos_token_id] = 5.0
    handle = model.lm_head.register_forward_hook(lambda _module, _inputs, output: output + bias)
    try:
        yield tiny
    finally:
        handle.remove()


@pytest.mark.parametrize("max_new_tokens", [2, 6])
def test_token_counts_and_truncation_follow_max_new_tokens(eos_biased, max_new_tokens):
    out = hf(eos_biased, batch_size=16).generate(
        PROMPTS_HF, max_new_tokens=max_new_tokens, temperature=1.0, num_samples=6, seed=1
    )
    flat = [g for samples in out for g in samples]
    assert all(0 <= g.tokens <= max_new_tokens for g in flat)
    assert all(g.truncated == (g.tokens == max_new_tokens) for g in flat)
    assert any(g.truncated for g in flat) and any(not g.truncated for g in flat)
    assert any(g.tokens == 0 and g.text == "" for g in flat)


def test_logprob_is_finite_negative_and_falls_when_tokens_are_appended(tiny):
    gen = hf(tiny, batch_size=4)
    prompts = [p for p in PROMPTS_HF for _ in range(3)]
    targets = ["<solution>7</solution>", "<solution>7</solution> and more", "<solution>7</solution> and more tokens"]
    scores = gen.logprob(prompts, targets * len(PROMPTS_HF))
    assert all(math.isfinite(s) and s < 0 for s in scores)
    for i in range(0, len(scores), 3):
        assert scores[i] > scores[i + 1] > scores[i + 2]
    one_by_one = hf(tiny, batch_size=1).logprob(prompts, targets * len(PROMPTS_HF))
    assert one_by_one == pytest.approx(scores, abs=1e-4)


FEW_SHOT = [
    student_messages("Ann has 4 apples and buys 3 more. How many apples does she have?"),
    student_messages("Ann has 4 apples and buys 3 more. How many apples does she have?"),  # identical rows
    student_messages("Ann has 4 apples and buys 3 more. How many apples does she have?", "Add 4 and 3."),
    student_messages("A road is 120 m long. Trees stand every 10 m. How many gaps?"),
]


@pytest.mark.parametrize(
    "rows",
    [[0, 1], [0, 1, 2, 3], [2, 3], [0, 2]],
    ids=["identical", "mixed", "different hints", "hint or not"],
)
def test_shared_prefix_batches_match_one_at_a_time(tiny, rows):
    """Few-shot prompts share ~200 tokens: the batch runs them once (KV cache) and must change nothing."""
    import atlas.llm.generation as generation

    prompts = [FEW_SHOT[i] for i in rows]
    targets = ["<solution>7</solution>"] * len(prompts)
    batched = hf(tiny, batch_size=8)
    ids = batched._encode([batched.render(p) for p in prompts])
    assert generation._common_prefix(ids) >= generation.MIN_SHARED_PREFIX  # the shared-prefix path is exercised
    single = hf(tiny, batch_size=1)
    assert [o[0].text for o in batched.generate(prompts, max_new_tokens=8, temperature=0.0)] == [
        o[0].text for o in single.generate(prompts, max_new_tokens=8, temperature=0.0)
    ]
    assert batched.logprob(prompts, targets) == pytest.approx(single.logprob(prompts, targets), abs=1e-4)


# -- a fake OpenAI-compatible server ----------------------------------------------------------------------------------


def reply_words(prompt_text: str, seed: Any, index: int) -> list[str]:
    digest = hashlib.sha256(f"{prompt_text}|{seed}|{index}".encode()).hexdigest()
    return [f"w{digest[2 * k + 1 : 2 * k + 5]}" for k in range(3 + int(digest[0], 16) % 6)]


def prompt_text(body: dict[str, Any]) -> str:
    return body["prompt"] if "prompt" in body else json.dumps(body["messages"], sort_keys=True)


TOKEN_RE = re.compile(r"\s*\S+")


def fake_logprob(token: str) -> float:
    return -len(token.strip()) / 10


@dataclass
class FakeOpenAI:
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[tuple[str, dict, float, str | None]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    max_n: int | None = None
    delay: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    prompt_logprobs: bool = True
    text_offsets: bool = True
    choice_tokens: bool = False

    def reset(self) -> None:
        self.requests, self.faults = [], []
        self.max_n, self.delay, self.in_flight, self.max_in_flight = None, 0.0, 0, 0
        self.prompt_logprobs, self.text_offsets, self.choice_tokens = True, True, False

    async def endpoint(self, request):
        from starlette.responses import JSONResponse

        body = await request.json()
        auth = request.headers.get("authorization")
        with self.lock:
            self.requests.append((request.url.path, body, time.monotonic(), auth))
            fault = self.faults.pop(0) if self.faults else None
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if fault and "sleep" in fault:
                await asyncio.sleep(fault["sleep"])
            elif fault:
                headers = {"Retry-After": fault["retry_after"]} if "retry_after" in fault else {}
                detail = f"scripted failure; auth was {auth}" if fault.get("echo_auth") else "scripted failure"
                return JSONResponse({"error": {"message": detail}}, status_code=fault["status"], headers=headers)
            await asyncio.sleep(self.delay)
            return JSONResponse(self.answer(request.url.path, body))
        finally:
            with self.lock:
                self.in_flight -= 1

    def answer(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("echo"):
            return self.echo(body["prompt"])
        n = body.get("n", 1) if self.max_n is None else min(body.get("n", 1), self.max_n)
        choices, total = [], 0
        for index in range(n):
            words = reply_words(prompt_text(body), body.get("seed"), index)
            kept = words[: body["max_tokens"]]
            text = " ".join(kept)
            choice = {"index": index, "finish_reason": "length" if len(words) > len(kept) else "stop"}
            choice.update({"message": {"role": "assistant", "content": text}} if "chat" in path else {"text": text})
            if self.choice_tokens:
                choice["completion_tokens"] = 2 * len(kept)
            choices.append(choice)
            total += len(kept)
        return {"choices": list(reversed(choices)), "usage": {"completion_tokens": total}}

    def echo(self, text: str) -> dict[str, Any]:
        matches = list(TOKEN_RE.finditer(text))
        logprobs = {
            "tokens": [m.group() for m in matches],
            "token_logprobs": [None] + [fake_logprob(m.group()) for m in matches[1:]],
        }
        if self.text_offsets:
            logprobs["text_offset"] = [m.start() for m in matches]
        choice = {"index": 0, "text": text, "finish_reason": "length"}
        choice["logprobs"] = logprobs if self.prompt_logprobs else None
        return {"choices": [choice], "usage": {"completion_tokens": 0}}

    def paths(self) -> list[str]:
        return [r[0] for r in self.requests]


@pytest.fixture(scope="module")
def fake_server():
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    fake = FakeOpenAI()
    app = Starlette(
        routes=[
            Route("/v1/chat/completions", fake.endpoint, methods=["POST"]),
            Route("/v1/completions", fake.endpoint, methods=["POST"]),
        ]
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "fake OpenAI server did not start"
    fake.base_url = f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    yield fake
    server.should_exit = True
    thread.join(timeout=10)
    sock.close()


@pytest.fixture
def server(fake_server):
    fake_server.reset()
    return fake_server


def client(server: FakeOpenAI, **kwargs) -> OpenAIGenerator:
    options = {"backoff": 0.01, "timeout": 5.0, "max_retries": 3} | kwargs
    return OpenAIGenerator(server.base_url, "fake-student", **options)


CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
RENDERED = "<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n<|im_start|>assistant\n"


def test_chat_and_rendered_prompts_use_their_endpoints(server):
    with client(server) as gen:
        out = gen.generate([CHAT, RENDERED], max_new_tokens=50, temperature=0.0, seed=3)
    by_path = {r[0]: r[1] for r in server.requests}
    assert sorted(by_path) == ["/v1/chat/completions", "/v1/completions"]
    assert by_path["/v1/chat/completions"]["messages"] == CHAT
    assert by_path["/v1/completions"]["prompt"] == RENDERED
    for samples, path in zip(out, ["/v1/chat/completions", "/v1/completions"], strict=True):
        body = by_path[path]
        words = reply_words(prompt_text(body), body["seed"], 0)
        assert samples == [gen_of(words)]
        assert body["max_tokens"] == 50 and body["temperature"] == 0.0 and body["n"] == 1
    assert gen.calls == 2


def gen_of(words: list[str], truncated: bool = False):
    from atlas.llm.generation import Generation

    return Generation(text=" ".join(words), tokens=len(words), truncated=truncated)


def test_seeds_are_passed_per_request_and_reproducible(server):
    with client(server) as gen:
        first = gen.generate([RENDERED, RENDERED], max_new_tokens=50, temperature=1.0, seed=5)
        again = gen.generate([RENDERED, RENDERED], max_new_tokens=50, temperature=1.0, seed=5)
        other = gen.generate([RENDERED, RENDERED], max_new_tokens=50, temperature=1.0, seed=6)
    seeds = [r[1]["seed"] for r in server.requests]
    assert sorted(seeds[:2]) == sorted([request_seed(5, 0, 0), request_seed(5, 1, 0)])
    assert len(set(seeds[:2])) == 2  # the same prompt twice gets two independent samples
    assert first == again and first != other
    assert first[0] != first[1]


def test_num_samples_uses_n_and_splits_usage(server):
    with client(server) as gen:
        out = gen.generate([CHAT, RENDERED], max_new_tokens=50, temperature=0.8, num_samples=3, seed=1)
    assert len(server.requests) == 2 and all(r[1]["n"] == 3 for r in server.requests)
    assert [len(s) for s in out] == [3, 3] and gen.calls == 6
    for index, (prompt, samples) in enumerate(zip([CHAT, RENDERED], out, strict=True)):
        body = {"messages": prompt} if isinstance(prompt, list) else {"prompt": prompt}
        expected = [" ".join(reply_words(prompt_text(body), request_seed(1, index, 0), k)) for k in range(3)]
        assert [g.text for g in samples] == expected  # choices in index order (the server sends them reversed)
        assert all(g.tokens == len(g.text.split()) for g in samples)  # total usage split back per choice


def test_fewer_choices_than_n_are_completed_one_by_one(server):
    server.max_n = 1
    with client(server) as gen:
        out = gen.generate([RENDERED], max_new_tokens=50, temperature=0.8, num_samples=3, seed=2)
    assert [r[1]["n"] for r in server.requests] == [3, 1, 1]
    assert [r[1]["seed"] for r in server.requests] == [request_seed(2, 0, k) for k in range(3)]
    assert len(out[0]) == 3 and len({g.text for g in out[0]}) == 3


def test_per_choice_token_counts_win_over_usage(server):
    server.choice_tokens = True
    with client(server) as gen:
        out = gen.generate([RENDERED], max_new_tokens=50, temperature=0.8, num_samples=2)
    assert all(g.tokens == 2 * len(g.text.split()) for g in out[0])


@pytest.mark.parametrize(("max_new_tokens", "expect_truncated"), [(2, True), (50, False)])
def test_finish_reason_length_marks_truncation(server, max_new_tokens, expect_truncated):
    with client(server) as gen:
        out = gen.generate([CHAT, RENDERED], max_new_tokens=max_new_tokens, temperature=0.5, num_samples=2)
    flat = [g for samples in out for g in samples]
    assert all(g.truncated is expect_truncated for g in flat)
    assert all(g.tokens == (2 if expect_truncated else len(g.text.split())) for g in flat)


@pytest.mark.parametrize(
    ("fault", "min_gap", "max_gap"),
    [
        ({"status": 429, "retry_after": "0.3"}, 0.28, 2.0),  # waits what the server asked for
        ({"status": 429}, 0.0, 0.25),  # no Retry-After: exponential backoff (0.01 s here)
        ({"status": 500}, 0.0, 0.25),
        ({"status": 408}, 0.0, 0.25),
        ({"status": 503, "retry_after": "0"}, 0.0, 0.25),
        ({"sleep": 1.0}, 0.3, 0.9),  # the client's 0.3 s timeout
    ],
)
def test_transient_failures_are_retried(server, fault, min_gap, max_gap):
    server.faults = [fault]
    with client(server, timeout=0.3) as gen:
        out = gen.generate([RENDERED], max_new_tokens=50, temperature=0.0)
    assert len(server.requests) == 2
    gap = server.requests[1][2] - server.requests[0][2]
    assert min_gap <= gap <= max_gap
    assert out[0][0].text == " ".join(reply_words(RENDERED, server.requests[1][1]["seed"], 0))


def test_gives_up_after_max_retries_with_a_clear_error(server):
    server.faults = [{"status": 502}] * 10
    with client(server, max_retries=2) as gen, pytest.raises(AtlasError, match=r"failed after 3 attempts.*HTTP 502"):
        gen.generate([RENDERED], max_new_tokens=5, temperature=0.0)
    assert len(server.requests) == 3


@pytest.mark.parametrize("status", [400, 409])  # the judges' client retries exactly what this one does
def test_client_errors_are_not_retried(server, status):
    server.faults = [{"status": status}]
    with client(server) as gen, pytest.raises(AtlasError, match=f"HTTP {status}"):
        gen.generate([CHAT], max_new_tokens=5, temperature=0.0)
    assert len(server.requests) == 1


def test_concurrency_is_bounded_and_order_kept(server):
    server.delay = 0.05
    prompts = [f"{RENDERED}{i}" for i in range(12)]
    with client(server, max_concurrency=3) as gen:
        out = gen.generate(prompts, max_new_tokens=50, temperature=0.0)
    assert server.max_in_flight == 3
    seeds = {r[1]["prompt"]: r[1]["seed"] for r in server.requests}
    assert [s[0].text for s in out] == [" ".join(reply_words(p, seeds[p], 0)) for p in prompts]


def test_api_key_is_sent_but_never_shown(server, monkeypatch, caplog):
    monkeypatch.setenv("FAKE_STUDENT_KEY", "sk-very-secret-123")
    server.faults = [{"status": 503, "echo_auth": True}, {"status": 401, "echo_auth": True}]
    caplog.set_level(logging.DEBUG)
    with client(server, api_key_env="FAKE_STUDENT_KEY") as gen, pytest.raises(AtlasError) as info:
        gen.generate([RENDERED], max_new_tokens=5, temperature=0.0)
    assert server.requests[0][3] == "Bearer sk-very-secret-123"
    assert "HTTP 401" in str(info.value) and "[REDACTED]" in str(info.value)
    assert "sk-very-secret-123" not in str(info.value) + caplog.text


def test_missing_api_key_variable_is_named(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(AtlasError, match="NO_SUCH_KEY_VAR"):
        OpenAIGenerator("http://127.0.0.1:9/v1", "m", api_key_env="NO_SUCH_KEY_VAR")


class RegexTokenizer:
    """Splits like the fake server; enough of the tokenizer interface for `count_tokens` and `logprob`."""

    def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
        matches = list(TOKEN_RE.finditer(text))
        out = {"input_ids": list(range(len(matches)))}
        if return_offsets_mapping:
            out["offset_mapping"] = [(m.start(), m.end()) for m in matches]
        return out


@pytest.mark.parametrize("tokenizer", [None, RegexTokenizer()])
def test_logprob_sums_the_target_tokens(server, tokenizer):
    prompts = ["a bb", "x", "one two three"]
    targets = [" ccc dddd", " yy", ""]
    with client(server, tokenizer=tokenizer) as gen:
        scores = gen.logprob(prompts, targets)
    assert scores == pytest.approx([-0.7, -0.2, 0.0])
    body = server.requests[0][1]
    assert body["echo"] is True and body["logprobs"] == 1 and body["max_tokens"] == 0
    assert gen.calls == 0


@pytest.mark.parametrize(
    ("setting", "message"), [("prompt_logprobs", "no prompt log-probabilities"), ("text_offsets", "text_offset")]
)
def test_logprob_without_server_support_fails_clearly(server, setting, message):
    setattr(server, setting, False)
    with client(server) as gen, pytest.raises(AtlasError, match=message):
        gen.logprob(["a bb"], [" cc"])


def test_count_tokens_and_render_without_tokenizer():
    gen = OpenAIGenerator("http://127.0.0.1:9/v1", "m")
    assert gen.count_tokens("So the answer is  7 .") == 6
    assert gen.render(RENDERED) == RENDERED
    assert gen.render(CHAT[1:]) == RENDERED
    gen.close()


@pytest.mark.parametrize(("value", "expected"), [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), (None, None)])
def test_parse_retry_after(value, expected):
    assert parse_retry_after(value) == expected


def test_parse_retry_after_http_date():
    from email.utils import formatdate

    assert 8 <= parse_retry_after(formatdate(time.time() + 10, usegmt=True)) <= 10
