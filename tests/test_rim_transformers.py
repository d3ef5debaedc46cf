"""The local `transformers` backend with a real (tiny, random) causal LM: it generates, counts tokens, and its
unusable output ends as an honest failure (re-asked, then None with a reason), never as a made-up score."""

from __future__ import annotations

import pytest

from tests.rim_helpers import GOOD_ROW, make_reward


@pytest.mark.slow
def test_tiny_local_judge_generates_and_fails_honestly(tmp_path):
    from atlas.llm.models import build_tiny

    model_dir = build_tiny(tmp_path / "judge", seed=0)
    model = {"provider": "transformers", "model": str(model_dir), "max_output_tokens": 16, "timeout_seconds": 120}
    reward = make_reward(
        tmp_path,
        small_model=model | {"retry": {"invalid_json_retries": 1}},
        large_model=model | {"retry": {"invalid_json_retries": 0}},
        temperatures=[0.0, 0.7],
        active_judges={"accuracy": True},
    )
    [row] = reward.score_batch_sync([GOOD_ROW])
    judge = row.judges["accuracy"]
    assert row.score is None and judge.score is None and judge.escalated
    assert "no valid judgment" in judge.error
    calls = judge.calls
    assert len(calls) == 2 * 2 + 1  # two asks per tier-1 temperature, one arbiter ask
    assert all(c.input_tokens > 0 and 0 < c.output_tokens <= 16 for c in calls)
    assert reward.last_metrics["tokens"] == sum(c.input_tokens + c.output_tokens for c in calls)

    again = make_reward(tmp_path, small_model=model, large_model=model, temperatures=[0.0])
    backend = again.backends()[0]
    from atlas.rim.backends.base import GenerationRequest
    from atlas.rim.calls import run_sync

    first = run_sync(lambda: backend.generate(GenerationRequest("Rate this.", 0.7, 8)))
    second = run_sync(lambda: backend.generate(GenerationRequest("Rate this.", 0.7, 8)))
    assert first.text == second.text  # sampling is seeded from the prompt and temperature
