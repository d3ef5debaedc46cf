"""The real orchestration: the Prefect flow `atlas` (a session-scoped test server) driving `dvc repro` stage by stage
at the tiny preset, MLflow parent/nested runs, the registry, a second `dvc repro` that has nothing to do, and a run
whose gate cannot pass."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import make_project


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


def _mlflow_runs():
    from mlflow import MlflowClient

    from atlas.ops.tracking import experiment_id

    client = MlflowClient()
    return client, client.search_runs([experiment_id("atlas")])


def test_flow_runs_pipeline_then_dvc_is_up_to_date(prefect_server, tmp_path, monkeypatch):
    from atlas.ops import registry
    from flows.train import atlas_flow

    root = make_project(tmp_path / "p", preset="cpu")  # the flow's `preset` parameter must win over params.yaml
    monkeypatch.chdir(root)
    state = atlas_flow(preset="tiny", return_state=True)
    assert state.is_completed(), state.message
    assert yaml.safe_load((root / "params.yaml").read_text())["preset"] == "tiny"

    client, runs = _mlflow_runs()
    parents = [r for r in runs if r.data.tags.get("atlas.pipeline") == "true"]
    assert len(parents) == 1
    children = {
        r.data.tags.get("atlas.stage") for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id
    }
    assert {"models", "ingest", "validate", "probe", "sft", "grpo", "evaluate", "gate", "register"} <= children
    champion = registry.alias_version("atlas-teacher", "champion")
    assert champion is not None and champion.tags["preset"] == "tiny"

    from atlas.config import load_config
    from atlas.ops.results import results_markdown

    table = results_markdown(load_config())
    assert parents[0].info.run_id in table and "gate passed" in table and "Non-Degradation" in table

    lock = yaml.safe_load((root / "dvc.lock").read_text())
    outs = {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}
    assert {"data/processed", "data/probe", "data/checkpoints/sft", "data/checkpoints/grpo"} <= outs
    again = subprocess.run([sys.executable, "-m", "dvc", "repro"], capture_output=True, text=True, check=True)
    assert "Data and pipelines are up to date" in again.stdout + again.stderr

    # A scheduled run with nothing new: every DVC stage is up to date and says so.
    again_state = atlas_flow(return_state=True)
    assert again_state.is_completed()
    statuses = again_state.result()
    assert all(statuses[s] == "skipped (up to date)" for s in ("models", "ingest", "probe", "sft", "grpo", "evaluate"))
    champion = registry.alias_version("atlas-teacher", "champion")  # the same checkpoint, registered again

    # New rows arrive and the gate cannot pass: the run re-ingests and retrains, then fails naming the metric and
    # its threshold; the champion stays where it was.
    rows = [
        {
            "problem": f"Ann has {a} pens and buys {a + 4} more. How many pens does she have now?",
            "ground_truth": str(2 * a + 4),
        }
        for a in range(3, 9)
    ]
    (root / "data/incoming/new.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with open(root / "params.yaml", "a", encoding="utf-8") as fh:
        fh.write("gate:\n  min_non_degradation_rate: 1.0\n  min_accuracy_delta: 5.0\n")
    failed = atlas_flow(return_state=True)
    assert failed.is_failed()
    message = str(failed.result(raise_on_failure=False))
    assert "FAIL accuracy_delta" in message and ">= 5.000" in message
    assert registry.alias_version("atlas-teacher", "champion").version == champion.version
    _, runs = _mlflow_runs()
    stage_runs = [r.data.tags.get("atlas.stage") for r in runs]
    assert stage_runs.count("ingest") == 2 and stage_runs.count("grpo") == 2 and stage_runs.count("evaluate") == 2
    records = (root / "data/interim/records.jsonl").read_text()
    assert "Ann has 3 pens" in records
