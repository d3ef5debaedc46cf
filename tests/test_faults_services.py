"""Services that are down, on 127.0.0.1 with bounded time: an MLflow server that refuses connections or accepts and
never answers fails a stage in seconds with one line before it does any work, and a judge endpoint that never
answers cannot hold a GRPO reward batch past its deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from atlas.core import paths
from tests.faults import atlas, free_port, one_error_line, silent_server
from tests.rim_helpers import GOOD_ROW, make_reward


@pytest.mark.parametrize("server", ["refuses", "never answers"])
def test_an_unreachable_mlflow_fails_the_stage_in_seconds_before_any_work(project, monkeypatch, server):
    with silent_server() as silent:
        url = f"http://127.0.0.1:{free_port()}" if server == "refuses" else silent
        monkeypatch.setenv("MLFLOW_TRACKING_URI", url)
        start = time.monotonic()
        done = atlas(["ingest"], project, timeout=90)  # main took 250 s (refused) and 1,210 s (silent)
        elapsed = time.monotonic() - start
    assert done.returncode == 2
    error = one_error_line(done.stderr)
    assert url in error and ("not reachable" in error or "did not answer" in error)
    assert elapsed < 30, elapsed  # interpreter start + one health check with a 3 s connect / 5 s answer timeout
    assert not (project / paths.RECORDS).exists()  # the stage did no work


def test_a_hanging_judge_endpoint_leaves_unscored_rows_none_after_the_batch_deadline(tmp_path, caplog):
    with silent_server() as url:
        settings = {
            "provider": "openai",
            "model": "judge",
            "base_url": url + "/v1",
            "timeout_seconds": 120,  # a single call would wait this long, then retry
            "retry": {"attempts": 4, "backoff_seconds": 0.01},
        }
        reward = make_reward(
            tmp_path,
            small_model=settings,
            large_model=settings,
            active_judges={"helpfulness": True, "accuracy": True},
            batch_deadline_seconds=1.5,
        )
        columns = {k: [v, v, v] for k, v in GOOD_ROW.items()}
        start = time.monotonic()
        scores = asyncio.run(reward(["p"] * 3, ["<teaching>t</teaching>"] * 3, **columns))  # TRL's reward call
        elapsed = time.monotonic() - start
    assert scores == [None, None, None]
    assert elapsed < 10, elapsed
    assert reward.last_metrics["deadline_unscored"] == 3 and reward.last_metrics["unscored_rate"] == 1.0
    assert all("batch_deadline_seconds=1.5" in r.error for r in reward.last_results)
    assert any("not scored within the batch deadline" in r.getMessage() for r in caplog.records)


def test_rows_scored_before_the_deadline_keep_their_scores(tmp_path):
    from tests.rim_helpers import constant_backend

    fast = constant_backend(0.7)
    reward = make_reward(tmp_path, small=fast, active_judges={"helpfulness": True}, batch_deadline_seconds=5)
    assert asyncio.run(reward(["p"], ["<teaching>t</teaching>"], **{k: [v] for k, v in GOOD_ROW.items()})) == [0.7]
    assert reward.last_metrics["deadline_unscored"] == 0


def test_evaluation_scoring_is_never_cut_short_by_the_reward_deadline(tmp_path):
    """The deadline bounds a GRPO reward call only: `atlas evaluate` and `atlas rim score` score every row."""
    from tests.rim_helpers import constant_backend

    slow = constant_backend(0.7, latency=0.5)
    reward = make_reward(tmp_path, small=slow, active_judges={"helpfulness": True}, batch_deadline_seconds=0.1)
    assert reward.score_sync(**{k: [v] for k, v in GOOD_ROW.items()}) == [0.7]
    assert reward.last_metrics["deadline_unscored"] == 0
