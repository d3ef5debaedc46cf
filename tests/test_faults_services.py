"""Services that are down, on 127.0.0.1 with bounded time: an MLflow server that refuses connections or accepts and
never answers fails a stage in seconds with one line before it does any work."""

from __future__ import annotations

import time

import pytest

from atlas.core import paths
from tests.faults import atlas, free_port, one_error_line, silent_server


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
