"""The registry never reads an MLflow error as "no champion" and never swallows one (issue 13 item 5); runs left
RUNNING by a dead process are closed at the next start (issue 16 item 8)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from atlas.core.errors import AtlasError
from atlas.ops import registry, tracking


@pytest.fixture(autouse=True)
def _this_tests_store():
    tracking.get_mlflow()  # MLflow's tracking URI is process-global: point it at this test's store


def test_a_missing_model_or_alias_is_no_champion():
    assert registry.alias_version("never-registered", "champion") is None
    MlflowClient().create_registered_model("bare")
    assert registry.alias_version("bare", "champion") is None


@pytest.mark.parametrize("code", ["INTERNAL_ERROR", "PERMISSION_DENIED", "TEMPORARILY_UNAVAILABLE"])
def test_any_other_registry_error_is_raised(monkeypatch, code):
    def broken(self, *args, **kwargs):
        raise MlflowException("database is locked", error_code=code)

    monkeypatch.setattr(MlflowClient, "get_model_version_by_alias", broken)
    with pytest.raises(AtlasError, match="reading alias 'champion'.*database is locked"):
        registry.alias_version("atlas-teacher", "champion")


def test_create_registered_model_errors_are_not_swallowed(monkeypatch, tmp_path):
    import mlflow

    def refused(self, *args, **kwargs):
        raise MlflowException("permission denied", error_code="PERMISSION_DENIED")

    monkeypatch.setattr(MlflowClient, "create_registered_model", refused)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    with mlflow.start_run() as run, pytest.raises(AtlasError, match="creating registered model 'm'.*permission"):
        registry.register_checkpoint("m", ckpt, {}, run.info.run_id, run.info.artifact_uri)


def test_an_existing_registered_model_is_fine(tmp_path, monkeypatch):
    import mlflow

    from atlas.ops import teacher_model

    # the pyfunc model itself is tested in tests/test_teacher_model.py; here only the registry's error handling
    monkeypatch.setattr(
        teacher_model, "log_teacher_model", lambda *a: teacher_model.LoggedTeacher(teacher_model.MODEL_PATH, "card")
    )
    MlflowClient().create_registered_model("m")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")
    with mlflow.start_run() as run:
        version = registry.register_checkpoint("m", ckpt, {"a": "b"}, run.info.run_id, run.info.artifact_uri)
    assert version.version == "1"


def test_runs_left_running_by_a_dead_process_are_marked_killed():
    from atlas.config import load_config
    from atlas.ops import tracking

    cfg = load_config(None, preset="tiny")
    code = (
        "import os\n"
        "from atlas.config import load_config\n"
        "from atlas.ops import tracking\n"
        "cfg = load_config(None, preset='tiny')\n"
        "with tracking.stage_run(cfg, 'sft') as run:\n"
        "    print(run.info.run_id, flush=True)\n"
        "    os._exit(9)\n"  # dies like a SIGKILL: MLflow never hears of it
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    dead = done.stdout.split()[0]
    client = MlflowClient()
    assert client.get_run(dead).info.status == "RUNNING"
    with tracking.stage_run(cfg, "gate") as alive:  # the next start closes it; its own run is left alone
        assert client.get_run(dead).info.status == "KILLED"
        assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    assert client.get_run(alive.info.run_id).info.status == "FINISHED"
