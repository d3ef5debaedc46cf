"""The MLflow model registry for teachers: versions of `atlas-teacher`, the `champion` and `previous` aliases.

A checkpoint is logged as an MLflow pyfunc teacher model (`atlas.ops.teacher_model`: loadable with
`mlflow.pyfunc.load_model`, servable with `mlflow models serve`) and registered with `create_model_version`
(`mlflow.transformers` does not work with this transformers version).

The rules (`register`, the last step of a pipeline run):
- only a teacher whose gate passed, on the evaluation of exactly this checkpoint (hashes in reports/gate.json), with
  real weights, is registered;
- `gate.promote: false` (the tiny preset: random weights for tests) registers nothing;
- a checkpoint already in the registry (same `checkpoint_sha256`) is not stored again: its version is reused;
- `champion` moves only to a version of the champion's own lineage (`lineage`: preset, models, data source, eval
  split); a version of another lineage is registered without moving it (and says so);
- `previous` is the champion that was replaced, and always holds different weights (so `atlas rollback` changes
  the model).
Each version carries its provenance: git commit and whether the checkout was dirty, the sha256 of `dvc.lock` (the
file itself, params.yaml and the configuration are artifacts of its MLflow run), the `dvc.lock` hash of each output,
whether the outputs were pushed to the DVC remote, and the DVC experiment when the run was one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.errors import AtlasError
from atlas.core.io import read_json, replace_dir
from atlas.ops import tracking

log = logging.getLogger(__name__)

CHAMPION = "champion"
PREVIOUS = "previous"
LINEAGE_TAG = "lineage"


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    source: str
    tags: dict[str, str]

    @property
    def checkpoint_sha256(self) -> str:
        return self.tags.get("checkpoint_sha256", "")

    @property
    def lineage(self) -> str:
        return self.tags.get(LINEAGE_TAG, "")


def _client():
    from mlflow import MlflowClient

    tracking.get_mlflow()
    return MlflowClient()


def _registry_error(what: str, exc: Exception) -> AtlasError:
    return AtlasError(f"MLflow registry ({tracking.tracking_uri()}): {what} failed: {exc}")


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    return code == "RESOURCE_DOES_NOT_EXIST" or (code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc))


def _version(mv: Any) -> Version:
    return Version(mv.name, str(mv.version), mv.source, dict(mv.tags or {}))


def alias_version(name: str, alias: str) -> Version | None:
    """The version an alias points to; None only when the model or the alias does not exist (any other registry
    error is raised: a broken registry is never read as "no champion")."""
    from mlflow.exceptions import MlflowException

    client = _client()
    try:
        mv = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if _not_found(exc):
            return None
        raise _registry_error(f"reading alias '{alias}' of '{name}'", exc) from exc
    return _version(mv)


def versions_with_checkpoint(name: str, sha256: str) -> list[Version]:
    """The versions of `name` that hold exactly this checkpoint, oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        found = _client().search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if _not_found(exc):
            return []
        raise _registry_error(f"listing the versions of '{name}'", exc) from exc
    same = [_version(mv) for mv in found if (mv.tags or {}).get("checkpoint_sha256") == sha256]
    return sorted(same, key=lambda v: int(v.version))


def register_checkpoint(name: str, checkpoint: Path, tags: dict[str, str], run_id: str, artifact_uri: str) -> Version:
    """Log `checkpoint` into the active run as an MLflow pyfunc teacher model and register it as a new version of
    `name`, with the model card as its description (`atlas.ops.teacher_model`)."""
    from mlflow.exceptions import MlflowException

    from atlas.ops import teacher_model

    client = _client()
    try:  # first: a registry that refuses fails before the checkpoint is copied into the run
        client.create_registered_model(name, description="Teacher models trained by the ATLAS pipeline.")
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise _registry_error(f"creating registered model '{name}'", exc) from exc
    logged = teacher_model.log_teacher_model(name, checkpoint, tags)
    mv = client.create_model_version(
        name, source=f"{artifact_uri}/{logged.artifact_path}", run_id=run_id, tags={k: str(v) for k, v in tags.items()}
    )
    logged.describe(client, mv)
    log.info("registered %s version %s", name, mv.version)
    return _version(mv)


def promote(name: str, version: Version) -> Version | None:
    """Make `version` the champion. The replaced champion becomes `previous` when its weights differ (so
    `previous` always names other weights); returns it."""
    client = _client()
    current = alias_version(name, CHAMPION)
    if current is not None and current.version == version.version:
        return None
    replaced = None
    if current is not None and current.checkpoint_sha256 != version.checkpoint_sha256:
        client.set_registered_model_alias(name, PREVIOUS, current.version)
        replaced = current
    client.set_registered_model_alias(name, CHAMPION, version.version)
    previous = alias_version(name, PREVIOUS)
    if previous is not None and previous.checkpoint_sha256 == version.checkpoint_sha256:
        client.delete_registered_model_alias(name, PREVIOUS)  # it would name the champion's own weights
    return replaced


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


# -- lineage and provenance -----------------------------------------------------------------------------------------


def lineage(cfg: AtlasConfig) -> dict[str, str]:
    """What makes two teachers comparable: the preset, the models, the data source and the held-out split."""
    m, d = cfg.models, cfg.data

    def spec(s) -> str:
        return f"{s.source}@{s.revision or '-'} {s.dtype}"

    data = f"{d.source}@{d.revision or '-'}"
    if d.source == "synthetic":
        data += " " + json.dumps(d.synthetic.model_dump(mode="json"), sort_keys=True)
    return {
        "preset": cfg.preset,
        "teacher": spec(m.teacher),
        "student": spec(m.student) + (f" via {m.student_endpoint.base_url}" if m.student_endpoint.base_url else ""),
        "data": data,
        "eval_split": f"fraction={d.eval_fraction} salt={d.split_salt} max_eval={d.max_eval}",
    }


def lineage_id(cfg: AtlasConfig) -> str:
    return hashlib.sha256(json.dumps(lineage(cfg), sort_keys=True).encode()).hexdigest()[:16]


def _dvc_hashes(lock_text: str) -> dict[str, str]:
    import yaml

    data = yaml.safe_load(lock_text) or {}
    out = {}
    for stage in (data.get("stages") or {}).values():
        for item in stage.get("outs", []) or []:
            out[f"dvc.{item['path']}"] = str(item.get("md5", ""))
    return out


def collect_provenance(
    root: Path = Path("."), experiment: str | None = None, pushed: bool | None = None
) -> dict[str, Any]:
    """Where a candidate's data and weights come from: git commit (the experiment's own commit for an experiment),
    dirty flag, the exact dvc.lock, whether the outputs reached the DVC remote."""
    lock = Path(root) / "dvc.lock"
    lock_text = lock.read_text(encoding="utf-8") if lock.exists() else ""
    params = Path(root) / "params.yaml"
    if experiment:
        commit = (Path(root) / "EXPERIMENT").read_text(encoding="utf-8").split()[1]
        dirty: bool | None = False
    else:
        commit, dirty = tracking.git_commit(), tracking.git_dirty()
    return {
        "git_commit": commit,
        "git_dirty": dirty,
        "dvc_lock": lock_text,
        "params": params.read_text(encoding="utf-8") if params.exists() else "",
        "dvc_experiment": experiment or "",
        "dvc_pushed": pushed,
    }


def _weights(ckpt: Path) -> list[Path]:
    return sorted(p for pattern in ("*.safetensors", "*.bin") for p in ckpt.glob(pattern) if p.stat().st_size > 0)


def check_checkpoint(ckpt: Path) -> None:
    """A registrable checkpoint: a folder with a config and non-empty weight files."""
    if not ckpt.is_dir():
        raise AtlasError(f"{ckpt} is missing: run the pipeline (`dvc repro`, or `dvc pull` for a pushed run)")
    if not (ckpt / "config.json").exists() or not _weights(ckpt):
        raise AtlasError(f"{ckpt} holds no model weights (config.json and *.safetensors): refusing to register it")


# -- the pipeline's last step ---------------------------------------------------------------------------------------


def register(cfg: AtlasConfig, flow_run_id: str | None = None, provenance: dict[str, Any] | None = None) -> dict:
    """Register the gated teacher (the rules are in the module docstring). Returns what happened: `outcome` is
    one of "registered", "reused", "not registered"; `champion` says whether it is the champion now."""
    from atlas.llm.models import checkpoint_hash

    if not paths.GATE_REPORT.exists():
        raise AtlasError(f"{paths.GATE_REPORT} is missing: run `atlas gate` first")
    gate_report = read_json(paths.GATE_REPORT)
    teacher = gate_report.get("teacher", cfg.gate.teacher)
    ckpt = paths.TEACHER_CHECKPOINTS[teacher]
    if not gate_report.get("passed"):
        raise AtlasError(f"{paths.GATE_REPORT}: the gate did not pass; nothing to register")
    check_checkpoint(ckpt)
    sha = checkpoint_hash(ckpt)
    if gate_report.get("checkpoint_sha256") != sha:
        raise AtlasError(
            f"{paths.GATE_REPORT} gated {ckpt} with sha256 {str(gate_report.get('checkpoint_sha256'))[:12]}, but "
            f"it now holds {sha[:12]}: run `atlas gate` (after `dvc repro evaluate`) again"
        )
    eval_sha = hashlib.sha256(paths.EVAL_METRICS.read_bytes()).hexdigest() if paths.EVAL_METRICS.exists() else None
    if gate_report.get("eval_sha256") != eval_sha:
        raise AtlasError(f"{paths.GATE_REPORT} was made from another {paths.EVAL_METRICS}: run `atlas gate` again")
    name = cfg.tracking.registered_model
    out: dict[str, Any] = {"name": name, "version": None, "champion": False, "previous": None, "checkpoint": sha}
    if not cfg.gate.promote:
        reason = f"gate.promote is false (preset '{cfg.preset}'): a teacher of this preset is never registered"
        log.info("%s", reason)
        return {**out, "outcome": "not registered", "reason": reason}
    prov = provenance or collect_provenance()
    lineage_key, champion = lineage_id(cfg), alias_version(name, CHAMPION)
    same = [v for v in versions_with_checkpoint(name, sha) if v.lineage == lineage_key]
    if same:
        version, outcome = same[-1], "reused"
        log.info("checkpoint %s is already version %s of %s: not stored again", sha[:12], version.version, name)
    else:
        tags = {
            "checkpoint_sha256": sha,
            "teacher": teacher,
            "gate_passed": "true",
            "preset": cfg.preset,
            LINEAGE_TAG: lineage_key,
            **{f"lineage.{k}": v[:500] for k, v in lineage(cfg).items()},
            "git_commit": prov["git_commit"],
            "git_dirty": str(prov["git_dirty"]).lower(),
            "dvc_lock_sha256": hashlib.sha256(prov["dvc_lock"].encode()).hexdigest(),
            "dvc_pushed": str(prov["dvc_pushed"]).lower(),
            "dvc_experiment": prov["dvc_experiment"],
            "config_sha256": hashlib.sha256(
                json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
            ).hexdigest(),
            "flow_run_id": flow_run_id or os.environ.get("PREFECT__FLOW_RUN_ID", ""),
            **_dvc_hashes(prov["dvc_lock"]),
        }
        with tracking.stage_run(cfg, "register") as run:
            import mlflow

            mlflow.log_dict(cfg.model_dump(mode="json"), "config.json")
            mlflow.log_text(prov["dvc_lock"], "provenance/dvc.lock")
            mlflow.log_text(prov["params"], "provenance/params.yaml")
            version = register_checkpoint(name, ckpt, tags, run.info.run_id, run.info.artifact_uri)
        outcome = "registered"
    out.update(version=version.version, outcome=outcome)
    if champion is not None and champion.lineage != lineage_key:
        out["reason"] = (
            f"champion v{champion.version} is of another lineage ({champion.tags.get('preset', '?')}, "
            f"{champion.lineage or 'untagged'}); a teacher never replaces a champion of another lineage"
        )
        log.warning("%s: %s v%s registered without moving champion", out["reason"], name, version.version)
        return out
    replaced = promote(name, version)
    out.update(champion=True, previous=replaced.version if replaced else None)
    log.info("%s v%s is the champion%s", name, version.version, f" (previous: v{replaced.version})" if replaced else "")
    return out


def rollback_champion(cfg: AtlasConfig) -> dict:
    """`atlas rollback`: the champion becomes the version it replaced."""
    restored = rollback(cfg.tracking.registered_model)
    log.info("champion is now version %s", restored.version)
    return {"name": restored.name, "champion": restored.version}
