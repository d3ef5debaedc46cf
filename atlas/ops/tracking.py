"""MLflow tracking: one parent run per pipeline run, one nested run per stage.

The tracking store is sqlite at the project root (`mlruns.db`) unless `MLFLOW_TRACKING_URI` says otherwise, and
artifacts go to an absolute `mlartifacts/` folder (MLflow's file store is not used: it raises in this version).
A pipeline driver (the Prefect flow or `atlas run`) opens the parent run and hands its id to the DVC stage processes
in `ATLAS_PARENT_RUN_ID`; a stage run outside a pipeline (a bare `dvc repro`) is a top-level run of its own.

Every run is tagged with the process that owns it (pid, its start time, host). A run still RUNNING whose process
is gone (killed, even with SIGKILL) is marked KILLED when the next pipeline or stage run starts
(`close_dead_runs`), so the MLflow UI never shows a dead run as running.

The store is checked once per process before the first MLflow call (`check_store`): a tracking server that refuses
the connection or never answers fails the command in seconds with one line, before the stage does any work (MLflow's
own client retries for minutes first).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from atlas.config import AtlasConfig, config_to_flat_dict
from atlas.core import process
from atlas.core.errors import AtlasError

log = logging.getLogger(__name__)

PARENT_ENV = "ATLAS_PARENT_RUN_ID"
STAGE_TAG = "atlas.stage"
PIPELINE_TAG = "atlas.pipeline"
OWNER_TAGS = ("atlas.pid", "atlas.pid_start", "atlas.host")
# The experiment tag MLflow 3's UI reads to pick an experiment's view: "custom_model_development" opens it on the
# runs table (model training), not on the GenAI traces page (mlflow/server/js: ExperimentKind).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
STORE_CONNECT_TIMEOUT = 3.0  # seconds to connect to a tracking server
STORE_ANSWER_TIMEOUT = 5.0  # seconds for it to answer its health check
_CHECKED: set[str] = set()


def tracking_uri() -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{(Path.cwd() / 'mlruns.db').resolve()}"


def artifact_root() -> str:
    """Where new experiments keep artifacts: `ATLAS_ARTIFACT_ROOT` (a local path or a URI such as s3://...)."""
    root = os.environ.get("ATLAS_ARTIFACT_ROOT") or str(Path.cwd() / "mlartifacts")
    if "://" in root or root.startswith("mlflow-artifacts:"):
        return root
    return Path(root).resolve().as_uri()


def is_main_process() -> bool:
    """Under `accelerate launch` only rank 0 tracks and writes reports."""
    return os.environ.get("RANK", "0") == "0"


def without_credentials(uri: str) -> str:
    """The URI without credentials (what messages and links show; `atlas.ops.results.run_link` too)."""
    parts = urlsplit(uri)
    if parts.username or parts.password:
        host = parts.hostname or ""
        parts = parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host)
    return urlunsplit(parts)


def check_store(uri: str | None = None) -> None:
    """Fail fast, in one line, when the tracking store cannot be used: a server that refuses the connection or does
    not answer its health check within seconds, or a sqlite store in a folder that cannot be written."""
    uri = uri or tracking_uri()
    if uri in _CHECKED:
        return
    fix = "start it (`make ui` for the local one), or point MLFLOW_TRACKING_URI at a running server (unset it for "
    fix += "the project's sqlite store)"
    if uri.startswith(("http://", "https://")):
        import httpx

        timeout = httpx.Timeout(STORE_ANSWER_TIMEOUT, connect=STORE_CONNECT_TIMEOUT)
        shown = without_credentials(uri)
        try:
            status = httpx.get(f"{uri.rstrip('/')}/health", timeout=timeout).status_code
        except httpx.TimeoutException:
            raise AtlasError(
                f"MLflow tracking server {shown} did not answer within {STORE_ANSWER_TIMEOUT:g} s: {fix}"
            ) from None
        except httpx.HTTPError as exc:
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise AtlasError(f"MLflow tracking server {shown} is not reachable ({reason}): {fix}") from None
        if status not in (200, 401, 403):
            raise AtlasError(f"{shown}/health answered HTTP {status}: is MLFLOW_TRACKING_URI an MLflow server?")
    elif uri.startswith("sqlite:///"):
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise AtlasError(f"MLflow store {uri}: the folder {folder} does not exist or is not writable")
    _CHECKED.add(uri)


def get_mlflow():
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = tracking_uri()
    check_store(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    return mlflow


def experiment_id(name: str) -> str:
    """The experiment's id, created when missing; tagged so the MLflow UI opens it in the model-training view (an
    experiment made before the tag existed gets it too; a kind someone chose in the UI is kept)."""
    mlflow = get_mlflow()
    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:
            mlflow.MlflowClient().set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        return exp.experiment_id
    return mlflow.create_experiment(
        name, artifact_location=artifact_root(), tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND}
    )


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def git_dirty() -> bool | None:
    """Whether tracked files differ from the commit (params.yaml, dvc.lock, code); None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip())


def _base_tags(cfg: AtlasConfig) -> dict[str, str]:
    me = process.identity()
    owner = dict(zip(OWNER_TAGS, (me["pid"], me["start"], me["host"]), strict=True))
    return {"atlas.preset": cfg.preset, "atlas.git_commit": git_commit(), **owner}


def close_dead_runs(experiment: str) -> list[str]:
    """Mark KILLED every RUNNING run of `experiment` whose owning process (on this host) no longer exists.
    Returns their ids. Runs of other hosts, and runs without owner tags, are left alone."""
    from mlflow import MlflowClient

    get_mlflow()
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    host = process.identity()["host"]
    closed = []
    for run in client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'", max_results=500):
        tags = run.data.tags
        if tags.get("atlas.host") != host or not tags.get("atlas.pid", "").isdigit():
            continue
        if process.alive(int(tags["atlas.pid"]), tags.get("atlas.pid_start", "")):
            continue
        client.set_terminated(run.info.run_id, status="KILLED")
        closed.append(run.info.run_id)
        log.warning(
            "MLflow run %s (%s) was left RUNNING by process %s, which is gone: marked KILLED",
            run.info.run_id,
            run.info.run_name,
            tags["atlas.pid"],
        )
    return closed


@contextmanager
def pipeline_run(cfg: AtlasConfig, name: str | None = None, tags: dict[str, str] | None = None) -> Iterator[str]:
    """The parent run of one pipeline run; its id is exported so stage subprocesses nest under it."""
    mlflow = get_mlflow()
    exp = experiment_id(cfg.tracking.experiment)
    close_dead_runs(cfg.tracking.experiment)
    run_tags = {**_base_tags(cfg), PIPELINE_TAG: "true", **(tags or {})}
    with mlflow.start_run(experiment_id=exp, run_name=name or f"pipeline [{cfg.preset}]", tags=run_tags) as run:
        mlflow.log_params(_params(cfg))
        previous = os.environ.get(PARENT_ENV)
        os.environ[PARENT_ENV] = run.info.run_id
        try:
            yield run.info.run_id
        finally:
            if previous is None:
                os.environ.pop(PARENT_ENV, None)
            else:
                os.environ[PARENT_ENV] = previous


@contextmanager
def stage_run(cfg: AtlasConfig, stage: str, tags: dict[str, str] | None = None) -> Iterator[Any]:
    """A run for one stage, nested under the pipeline's parent run when there is one."""
    if not is_main_process():
        yield None
        return
    mlflow = get_mlflow()
    exp = experiment_id(cfg.tracking.experiment)
    if not os.environ.get(PARENT_ENV):  # under a pipeline run, its driver already did this at its start
        close_dead_runs(cfg.tracking.experiment)
    run_tags = {**_base_tags(cfg), STAGE_TAG: stage, **(tags or {})}
    parent = os.environ.get(PARENT_ENV)
    if parent:
        run_tags["mlflow.parentRunId"] = parent
    active = mlflow.active_run()
    nested = active is not None and active.info.run_id == parent  # in the driver's own thread: keep the parent open
    if active is not None and not nested:
        mlflow.end_run()
    name = f"{stage} [{cfg.preset}]"
    with mlflow.start_run(experiment_id=exp, run_name=name, tags=run_tags, nested=nested) as run:
        mlflow.log_params(_params(cfg))
        yield run


TEACHER_TAG = "atlas.teacher"


def log_teacher_runs(cfg: AtlasConfig, teachers: dict[str, dict[str, Any]]) -> list[str]:
    """One child run of the active (evaluate) run per teacher, each with the same metric names (`taught_accuracy`,
    `accuracy_delta`, ..., `rim.*`) and tag `atlas.teacher`, so MLflow's Compare puts the SFT and GRPO teachers side
    by side. Returns the run ids."""
    mlflow = get_mlflow()
    parent = mlflow.active_run()
    if not is_main_process() or parent is None:
        return []
    ids = []
    for name, teacher in teachers.items():
        tags = {**_base_tags(cfg), TEACHER_TAG: name, "mlflow.parentRunId": parent.info.run_id}
        with mlflow.start_run(
            experiment_id=parent.info.experiment_id, run_name=f"teacher {name} [{cfg.preset}]", tags=tags, nested=True
        ) as run:
            log_metrics(teacher["overall"])
            log_metrics(teacher.get("rim", {}), prefix="rim")
            ids.append(run.info.run_id)
    return ids


def _params(cfg: AtlasConfig) -> dict[str, str]:
    return {k: str(v)[:500] for k, v in config_to_flat_dict(cfg).items()}


def log_metrics(metrics: dict[str, Any], prefix: str = "", step: int | None = None) -> None:
    """Log the numeric leaves of a (nested) dict; None, strings and NaN are skipped."""
    if not is_main_process():
        return
    mlflow = get_mlflow()
    flat: dict[str, float] = {}
    _numeric_leaves(metrics, prefix, flat)
    if flat:
        mlflow.log_metrics(flat, step=step)


def log_run_metrics(run_id: str, metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """`log_metrics` into the run `run_id` (not the active one: a driver's own thread may have another open).
    Returns what was logged."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    flat: dict[str, float] = {}
    _numeric_leaves(metrics, prefix, flat)
    if flat and is_main_process():
        import time

        get_mlflow()
        now = int(time.time() * 1000)
        MlflowClient().log_batch(run_id, metrics=[Metric(k, v, now, 0) for k, v in flat.items()])
    return flat


def _numeric_leaves(value: Any, key: str, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _numeric_leaves(v, f"{key}.{k}" if key else str(k), out)
    elif isinstance(value, bool) or isinstance(value, int | float) and value == value:
        out[key] = float(value)


def set_tags(tags: dict[str, str]) -> None:
    """Tag the active run (e.g. the dtypes the models load in on this machine)."""
    if tags and is_main_process():
        get_mlflow().set_tags(tags)


def log_artifact(path: Path | str, artifact_path: str | None = None) -> None:
    path = Path(path)
    if path.exists() and is_main_process():
        get_mlflow().log_artifact(str(path), artifact_path=artifact_path)
