"""The OpenAI-compatible backend (vLLM, llama.cpp, Ollama) against a local fake /chat/completions server."""

from __future__ import annotations

import pytest

from atlas.config import ConfigError
from atlas.rim.backends.scripted import judgment_json
from tests.rim_helpers import GOOD_ROW, FakeJudgeServer, Reply, make_reward

KEY_ENV = "ATLAS_TEST_OPENAI_KEY"


def openai_reward(tmp_path, server, **model):
    settings = {
        "provider": "openai",
        "model": "judge-7b",
        "base_url": server.url + "/v1",
        "timeout_seconds": 0.5,
        "retry": {"attempts": 3, "backoff_seconds": 0.01},
        "input_price_per_million": 1.0,
        "output_price_per_million": 1.0,
    } | model
    return make_reward(
        tmp_path,
        small_model=settings,
        large_model=settings,
        temperatures=[0.3, 0.7],
        active_judges={"helpfulness": True},
    )


def test_request_format_auth_and_usage(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-local-test")
    with FakeJudgeServer("openai", default=Reply(text=judgment_json(0.65, 0.1))) as server:
        reward = openai_reward(tmp_path, server, api_key_env=KEY_ENV)
        [row] = reward.score_batch_sync([GOOD_ROW])
    assert row.score == 0.65
    request = server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sk-local-test"
    body = request["body"]
    assert body["model"] == "judge-7b" and body["response_format"] == {"type": "json_object"}
    assert body["messages"][0]["role"] == "user" and "WITHOUT guidance" in body["messages"][0]["content"]
    assert reward.last_metrics["tokens"] == 2 * 160 and reward.last_metrics["cost_usd"] == pytest.approx(320 / 1e6)


@pytest.mark.parametrize(
    ("response_format", "expected"),
    [("json_schema", "json_schema"), ("none", None)],
)
def test_response_format_options(tmp_path, response_format, expected):
    with FakeJudgeServer("openai") as server:
        openai_reward(tmp_path, server, response_format=response_format).score_batch_sync([GOOD_ROW])
    sent = server.requests[0]["body"].get("response_format")
    assert (sent or {}).get("type") == expected
    if expected == "json_schema":
        assert sent["json_schema"]["schema"]["required"][:2] == ["principles", "score"]
    assert "Authorization" not in server.requests[0]["headers"]


@pytest.mark.parametrize(
    "first",
    [
        Reply(status=429, payload={"error": "rate limited"}, headers={"Retry-After": "0.2"}),
        Reply(status=502, payload={"error": "bad gateway"}),
        Reply(status=408, payload={"error": "request timeout"}),
        Reply(text=judgment_json(0.1), delay=1.0),
        Reply(status=200, payload={"unexpected": True}),
    ],
)
def test_transient_failures_are_retried(tmp_path, first):
    with FakeJudgeServer("openai", script=[first]) as server:
        reward = openai_reward(tmp_path, server)
        [row] = reward.score_batch_sync([GOOD_ROW])
    assert row.score == 0.8 and reward.last_metrics["retries"] == 1


@pytest.mark.parametrize("status", [404, 409])  # 409: the student's client never retried it, the judge's did
def test_client_errors_are_not_retried(tmp_path, status):
    with FakeJudgeServer("openai", default=Reply(status=status, payload={"error": "no such model"})) as server:
        reward = openai_reward(tmp_path, server)
        [row] = reward.score_batch_sync([GOOD_ROW])
    assert row.score is None and f"HTTP {status}" in row.judges["helpfulness"].error
    assert len(server.requests) == 3  # two tier-1 calls and one arbiter call, no retries


def test_base_url_is_required(tmp_path):
    reward = make_reward(tmp_path, small_model={"provider": "openai", "model": "m"})
    with pytest.raises(ConfigError, match="small_model.base_url' is required"):
        reward.score_batch_sync([GOOD_ROW])
