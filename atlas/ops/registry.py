"""The MLflow model registry for teachers: versions of `atlas-teacher`, the `champion` and `previous` aliases.

A checkpoint is logged as an MLflow pyfunc teacher model (`atlas.ops.teacher_model`: loadable with
`mlflow.pyfunc.load_model`, servable with `mlflow models serve`) and registered with `create_model_version`
(`mlflow.transformers` does not work with this transformers version).
`champion` moves only after a passed gate; `previous` keeps the champion it replaced, for `atlas rollback`.
`register(cfg)` (the pipeline's last step) registers the gated teacher with its provenance tags.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.errors import AtlasError
from atlas.core.io import read_json, replace_dir
from atlas.ops import tracking

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    source: str
    tags: dict[str, str]


def _client():
    from mlflow import MlflowClient

    tracking.get_mlflow()
    return MlflowClient()


def alias_version(name: str, alias: str) -> Version | None:
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return Version(name, str(mv.version), mv.source, dict(mv.tags or {}))


def register_checkpoint(name: str, checkpoint: Path, tags: dict[str, str], run_id: str, artifact_uri: str) -> Version:
    """Log `checkpoint` into the active run as an MLflow pyfunc teacher model and register it as a new version of
    `name`, with the model card as its description (`atlas.ops.teacher_model`)."""
    from mlflow.exceptions import MlflowException

    from atlas.ops import teacher_model

    client = _client()
    logged = teacher_model.log_teacher_model(name, checkpoint, tags)
    try:
        client.create_registered_model(name, description="Teacher models trained by the ATLAS pipeline.")
    except MlflowException:
        pass  # already exists
    mv = client.create_model_version(
        name, source=f"{artifact_uri}/{logged.artifact_path}", run_id=run_id, tags={k: str(v) for k, v in tags.items()}
    )
    logged.describe(client, mv)
    log.info("registered %s version %s", name, mv.version)
    return Version(name, str(mv.version), mv.source, dict(mv.tags or {}))


def promote(name: str, version: str) -> Version | None:
    """Make `version` the champion; the replaced champion becomes `previous`. Returns the replaced one."""
    client = _client()
    current = alias_version(name, CHAMPION)
    if current is not None and current.version != version:
        client.set_registered_model_alias(name, PREVIOUS, current.version)
    client.set_registered_model_alias(name, CHAMPION, version)
    return current


def rollback(name: str) -> Version:
    """Move `champion` back to `previous` (and drop `previous`, so a second rollback cannot ping-pong)."""
    client = _client()
    previous = alias_version(name, PREVIOUS)
    if previous is None:
        raise AtlasError(f"registered model '{name}' has no '{PREVIOUS}' version to roll back to")
    client.set_registered_model_alias(name, CHAMPION, previous.version)
    client.delete_registered_model_alias(name, PREVIOUS)
    return previous


def download(version: Version, dest: Path) -> Path:
    """Fetch a registered checkpoint into `dest` (reused when already there), swapped in as one folder."""
    import mlflow

    from atlas.ops import teacher_model

    dest = Path(dest)
    if (dest / "config.json").exists():
        return dest
    with replace_dir(dest) as tmp:
        top = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp)))
        local = teacher_model.checkpoint_in(top) if (top / "MLmodel").exists() else top  # a pyfunc teacher model
        if local != tmp:  # the artifact folder arrives as tmp/<name>: its files belong in dest itself
            for item in local.iterdir():
                shutil.move(str(item), tmp / item.name)
            shutil.rmtree(top if top != tmp else local)
    return dest


def _dvc_hashes() -> dict[str, str]:
    lock = Path("dvc.lock")
    if not lock.exists():
        return {}
    import yaml

    data = yaml.safe_load(lock.read_text()) or {}
    out = {}
    for stage in (data.get("stages") or {}).values():
        for item in stage.get("outs", []) or []:
            out[f"dvc.{item['path']}"] = str(item.get("md5", ""))
    return out


def register(cfg: AtlasConfig, flow_run_id: str | None = None) -> dict:
    """Register the gated teacher as a new `atlas-teacher` version; move `champion` only if the gate passed."""
    from atlas.llm.models import checkpoint_hash

    if not paths.GATE_REPORT.exists():
        raise AtlasError(f"{paths.GATE_REPORT} is missing: run `atlas gate` first")
    gate_report = read_json(paths.GATE_REPORT)
    ckpt = paths.TEACHER_CHECKPOINTS[gate_report["teacher"]]
    tags = {
        "git_commit": tracking.git_commit(),
        "checkpoint_sha256": checkpoint_hash(ckpt),
        "teacher": gate_report["teacher"],
        "gate_passed": str(gate_report["passed"]).lower(),
        "preset": cfg.preset,
        "config": json.dumps(cfg.model_dump(), sort_keys=True, default=str)[:4900],
        "flow_run_id": flow_run_id or os.environ.get("PREFECT__FLOW_RUN_ID", ""),
        **_dvc_hashes(),
    }
    with tracking.stage_run(cfg, "register") as run:
        version = register_checkpoint(cfg.tracking.registered_model, ckpt, tags, run.info.run_id, run.info.artifact_uri)
        replaced = promote(version.name, version.version) if gate_report["passed"] else None
    out = {
        "name": version.name,
        "version": version.version,
        "champion": gate_report["passed"],
        "previous": replaced.version if replaced else None,
    }
    log.info("registered %s v%s%s", version.name, version.version, " as champion" if out["champion"] else "")
    return out


def rollback_champion(cfg: AtlasConfig) -> dict:
    """`atlas rollback`: the champion becomes the version it replaced."""
    restored = rollback(cfg.tracking.registered_model)
    log.info("champion is now version %s", restored.version)
    return {"name": restored.name, "champion": restored.version}
