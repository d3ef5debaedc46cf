"""Doctor checks of the services and storage around training: the Prefect server and its deployment, the MLflow
store and model registry, the DVC repository and remote, and free disk space. Read-only: nothing is created."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sqlite3
import tomllib
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from atlas.ops.doctor import core
from atlas.ops.doctor.core import PROBE_TIMEOUT, Check, http_get, mask_url, truthy

DEPLOYMENT = "atlas/train"
DISK_WARN_GB, DISK_FAIL_GB = 5.0, 1.0
DVC_PLUGINS = {"s3": "dvc-s3", "gs": "dvc-gs", "gcs": "dvc-gs", "azure": "dvc-azure", "ssh": "dvc-ssh"}
DVC_PLUGINS |= {"hdfs": "dvc-hdfs", "webdav": "dvc-webdav", "webdavs": "dvc-webdav", "oss": "dvc-oss"}
DVC_PLUGINS |= {"gdrive": "dvc-gdrive", "http": "dvc-http", "https": "dvc-http"}


def prefect_api_url(env, root: Path) -> str | None:
    """The API URL Prefect would use, in Prefect's own order (environment, ./.env, ./prefect.toml,
    ./pyproject.toml [tool.prefect], the active profile). The common cases are read directly, because importing
    prefect costs ~3 s; anything else (a .env file, a profile) asks `prefect.settings` itself."""
    if env.get("PREFECT_API_URL"):
        return env["PREFECT_API_URL"]
    dotenv = root / ".env"
    if not (dotenv.is_file() and "PREFECT_API_URL" in dotenv.read_text(encoding="utf-8", errors="replace")):
        for name, keys in (("prefect.toml", ("api", "url")), ("pyproject.toml", ("tool", "prefect", "api", "url"))):
            node = tomllib.loads((root / name).read_text(encoding="utf-8")) if (root / name).is_file() else {}
            for key in keys:
                node = node.get(key, {}) if isinstance(node, dict) else {}
            if node and isinstance(node, str):
                return node
    from prefect.settings import Settings

    return Settings().api.url  # a fresh read (the cached current settings miss later environment changes)


def check_prefect(env, root: Path) -> list[Check]:
    url = prefect_api_url(env, root)
    if not url:
        message = "no Prefect API URL set: every flow run starts a temporary server (6-9 s)"
        fix = "make serve (prefect.toml points at http://127.0.0.1:4200/api)"
        return [Check("prefect server", "warn", message, fix)]
    headers = {"Authorization": f"Bearer {env['PREFECT_API_KEY']}"} if env.get("PREFECT_API_KEY") else None
    base = url.rstrip("/")
    status, detail = http_get(f"{base}/health", headers)
    if status != 200:
        return [Check("prefect server", "warn", f"not healthy at {mask_url(url)} ({detail})", "make serve")]
    checks = [Check("prefect server", "ok", f"healthy at {mask_url(url)}")]
    flow, name = DEPLOYMENT.split("/")
    status, detail = http_get(f"{base}/deployments/name/{flow}/{name}", headers)
    if status == 200:
        checks.append(Check("prefect deployment", "ok", f"{DEPLOYMENT} exists"))
    else:
        message = f"{DEPLOYMENT} not found ({detail})"
        checks.append(Check("prefect deployment", "warn", message, "make serve (serves atlas/train)"))
    return checks


def _writable_dir(path: Path) -> tuple[bool, Path]:
    """Whether `path` (or, if it does not exist yet, its nearest existing parent) is a writable directory."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    return probe.is_dir() and os.access(probe, os.W_OK), probe


def _registry_from_sqlite(db: Path, model: str) -> str:
    try:
        con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=PROBE_TIMEOUT)
        try:
            if not con.execute("SELECT 1 FROM registered_models WHERE name = ?", (model,)).fetchone():
                return f"registered model '{model}' does not exist yet (the first `atlas register` creates it)"
            row = con.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = 'champion'", (model,)
            ).fetchone()
            weights = (
                row
                and con.execute(
                    "SELECT value FROM model_version_tags WHERE name = ? AND version = ? AND key = 'checkpoint_sha256'",
                    (model, row[0]),
                ).fetchone()
            )
        finally:
            con.close()
    except sqlite3.Error as exc:
        return f"registry not readable yet ({exc})"
    if not row:
        return f"'{model}' exists, no champion alias yet"
    if not weights or weights[0] in ("", EMPTY_SHA256):
        return f"'{model}' champion = version {row[0]}, which records no weights (checkpoint_sha256 of nothing)"
    return f"'{model}' champion = version {row[0]}"


def _registry_from_server(uri: str, model: str, env) -> str:
    token = env.get("MLFLOW_TRACKING_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else None
    api = f"{uri}/api/2.0/mlflow/registered-models"
    status, _ = http_get(f"{api}/alias", headers, {"name": model, "alias": "champion"})
    if status == 200:
        return f"'{model}' has a champion alias"
    status, detail = http_get(f"{api}/get", headers, {"name": model})
    return f"'{model}' exists, no champion alias yet" if status == 200 else f"'{model}' not found ({detail})"


EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of no bytes


def _registry_check(message: str) -> Check:
    if "records no weights" in message:
        return Check("mlflow registry", "warn", message, "`atlas rollback`, or run the pipeline to register a teacher")
    return Check("mlflow registry", "ok", message)


def check_mlflow(cfg, env) -> list[Check]:
    from atlas.ops.tracking import artifact_root, tracking_uri

    uri = tracking_uri()
    model = cfg.tracking.registered_model if cfg is not None else "atlas-teacher"
    shown = mask_url(uri)
    if uri.startswith("sqlite:///"):
        db = Path(uri.removeprefix("sqlite:///"))
        artifacts = Path(url2pathname(urlsplit(artifact_root()).path))
        problems = [f"{p} is not writable" for p in (db.parent, artifacts) if not _writable_dir(p)[0]]
        if db.exists() and not os.access(db, os.W_OK):
            problems.append(f"{db} is read-only")
        if problems:
            fix = "fix the permissions, or export MLFLOW_TRACKING_URI and ATLAS_ARTIFACT_ROOT"
            return [Check("mlflow store", "fail", f"{shown}: {'; '.join(problems)}", fix)]
        state = "exists" if db.exists() else "created on the first run"
        registry = _registry_from_sqlite(db, model) if db.exists() else "no registry yet"
        return [Check("mlflow store", "ok", f"{shown} ({state}), artifacts in {artifacts}"), _registry_check(registry)]
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        status, detail = http_get(f"{base}/health")
        if status != 200:
            fix = "start the tracking server (`make ui` locally), or unset MLFLOW_TRACKING_URI for the sqlite store"
            return [Check("mlflow store", "fail", f"no tracking server at {shown} ({detail})", fix)]
        registry = _registry_from_server(base, model, env)
        return [Check("mlflow store", "ok", f"tracking server at {shown}"), _registry_check(registry)]
    return [Check("mlflow store", "ok", f"{shown} (database store: not probed by doctor)")]


def check_dvc(root: Path, env) -> list[Check]:
    version = core.installed_version("dvc")
    if version is None or importlib.util.find_spec("dvc") is None:
        return [Check("dvc", "fail", "dvc is not installed", "make setup")]
    dvc_dir = root / ".dvc"
    if not dvc_dir.is_dir():
        return [Check("dvc", "fail", f"{root} is not a DVC repository", "dvc init && dvc config core.analytics false")]
    from dvc.config import Config, ConfigError

    try:
        conf = Config(dvc_dir=str(dvc_dir))
    except ConfigError as exc:
        return [Check("dvc", "fail", f"{dvc_dir}/config: {exc}", "fix it with `dvc config` / `dvc remote modify`")]
    checks, remote = [], conf["core"].get("remote")
    if not remote:
        checks.append(Check("dvc remote", "warn", "no default remote", "dvc remote add -d <name> <url>"))
    elif remote not in conf["remote"]:
        checks.append(Check("dvc remote", "fail", f"default remote '{remote}' is not defined", "dvc remote list"))
    else:
        url = conf["remote"][remote]["url"]
        plugin = DVC_PLUGINS.get(urlsplit(url).scheme)
        if plugin and core.installed_version(plugin) is None:
            message = f"default remote '{remote}' ({mask_url(url)}) needs {plugin}, which is not installed"
            checks.append(Check("dvc remote", "fail", message, f"pip install {plugin}"))
        else:
            checks.append(Check("dvc remote", "ok", f"default remote '{remote}' ({mask_url(url)})"))
    analytics_off = conf["core"].get("analytics") is False or truthy(env.get("DVC_NO_ANALYTICS"))
    if analytics_off:
        checks.append(Check("dvc", "ok", f"dvc {version}, analytics off"))
    else:
        message = f"dvc {version}, analytics on (sends usage data)"
        checks.append(Check("dvc", "warn", message, "dvc config core.analytics false"))
    return checks


def check_disk(root: Path) -> list[Check]:
    free_gb = shutil.disk_usage(root).free / 1e9
    message = f"{free_gb:.1f} GB free at {root}"
    fix = "free space or move the project (the cpu preset needs ~3 GB of models and checkpoints)"
    if free_gb < DISK_FAIL_GB:
        return [Check("disk", "fail", message, fix)]
    if free_gb < DISK_WARN_GB:
        return [Check("disk", "warn", message, fix)]
    return [Check("disk", "ok", message)]
