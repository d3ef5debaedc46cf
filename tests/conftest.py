"""Shared fixtures. Nothing here writes into the repository: every project, MLflow store, DVC cache and Prefect
home lives in a temporary directory, and the network is never needed."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PROJECT_FILES = ["atlas", "flows", "configs", "params.yaml", "dvc.yaml", ".dvcignore", "prefect.toml", "data/incoming",
                 ".gitignore", "data/.gitignore", "reports/.gitignore"]  # fmt: skip

# Set before anything imports prefect: the repo's prefect.toml would otherwise put PREFECT_HOME inside the repo.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="atlas-prefect-")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def make_project(
    root: Path, preset: str = "tiny", extra_params: str = "", params: str | None = None, commit: bool = False
) -> Path:
    """A runnable copy of the project (configs, params, DVC pipeline) in `root`, as its own git + DVC repo.
    `params` replaces params.yaml's whole text (default: `preset: <preset>` + `extra_params`); `commit` makes a
    first commit (DVC experiments need one), as a fresh clone has."""
    root.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    text = params if params is not None else f"preset: {preset}\n{extra_params}"
    (root / "params.yaml").write_text(text, encoding="utf-8")
    subprocess.run([*GIT, "init", "-q"], cwd=root, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=root, check=True, env=_bin_env())
    subprocess.run(["dvc", "config", "core.analytics", "false"], cwd=root, check=True, env=_bin_env())
    if commit:
        git_commit(root, "a fresh clone")
    return root


GIT = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]


def git_commit(root: Path, message: str) -> str:
    subprocess.run([*GIT, "add", "-A"], cwd=root, check=True)
    subprocess.run([*GIT, "commit", "-q", "--allow-empty", "-m", message], cwd=root, check=True)
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=root, check=True, capture_output=True, text=True
    ).stdout.strip()


def _bin_env() -> dict[str, str]:
    import sys

    return {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path_factory, monkeypatch):
    """Every test gets its own MLflow store and DVC site cache; PREFECT_HOME never points into the repo."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{state / 'mlruns.db'}")
    monkeypatch.setenv("ATLAS_ARTIFACT_ROOT", str(state / "mlartifacts"))
    monkeypatch.setenv("DVC_SITE_CACHE_DIR", str(state / "dvc-site"))
    monkeypatch.delenv("ATLAS_PARENT_RUN_ID", raising=False)
    monkeypatch.setenv("PATH", _bin_env()["PATH"])


PLANTED_KEY = "sk-planted-secret-4f1e9c"  # must never appear in anything a run writes


@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """Run every DVC stage function once, in a tiny project with its own MLflow store."""
    root = make_project(tmp_path_factory.mktemp("tiny") / "project")
    saved_cwd, saved_env = os.getcwd(), dict(os.environ)
    os.chdir(root)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlruns.db'}"
    os.environ["ATLAS_ARTIFACT_ROOT"] = str(root / "mlartifacts")
    os.environ["GEMINI_API_KEY"] = os.environ["OPENAI_API_KEY"] = PLANTED_KEY
    try:
        from atlas.config import load_config
        from atlas.ops.runner import run_stage
        from atlas.stages import STAGES

        cfg = load_config()
        results = {name: run_stage(cfg, name) for name in STAGES}
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    return root, results


@pytest.fixture
def in_tiny(tiny, monkeypatch):
    """The session's tiny project as the working directory, with its MLflow store; no student from the environment."""
    root, results = tiny
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlruns.db'}")
    monkeypatch.setenv("ATLAS_ARTIFACT_ROOT", str(root / "mlartifacts"))
    for env in ("ATLAS_STUDENT", "ATLAS_STUDENT_BASE_URL"):
        monkeypatch.delenv(env, raising=False)
    return root, results


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A fresh tiny project as the working directory."""
    root = make_project(tmp_path / "project")
    monkeypatch.chdir(root)
    return root
