"""THE pipeline driver: `atlas run` and the Prefect flow `atlas` (flows/train.py) both go through here.

One parent MLflow run per pipeline run; DVC runs the stages of `atlas.stages.STAGES` (`dvc repro`, one DAG, one lock
file, one cache; each stage process nests its MLflow run under the parent through `ATLAS_PARENT_RUN_ID`), then the
gate and the registration run here, outside DVC (registry side effects do not belong in a DVC stage).

Each caller keeps its own policy for now: `run` (the `atlas run` command) runs one `dvc repro` of the whole DAG and
registers the candidate whether or not the gate passed (`champion` moves only when it passed); the flow runs
`repro_stage` per stage as a Prefect task and stops at a failed gate.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from atlas.config import AtlasConfig, available_presets
from atlas.core import paths
from atlas.core.errors import AtlasError, GateFailed
from atlas.core.io import atomic_write_text
from atlas.ops import gate as gate_checks
from atlas.ops import registry, tracking

log = logging.getLogger(__name__)
_SKIPPED = ("didn't change, skipping", "is cached - skipping")


@dataclass(frozen=True)
class PipelineResult:
    run_id: str
    gate_passed: bool
    gate_text: str  # the gate's lines when it failed, else ""
    registered: dict


def dvc_env(parent_run_id: str) -> dict[str, str]:
    """The environment of a `dvc repro`: this interpreter's bin first (stage commands call `atlas`), and the parent
    MLflow run for the stage runs to nest under."""
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    return {**os.environ, "PATH": path, tracking.PARENT_ENV: parent_run_id}


def run(cfg: AtlasConfig) -> PipelineResult:
    """`atlas run`: dvc repro of every stage, then gate and register, under one parent MLflow run."""
    with tracking.pipeline_run(cfg, name=f"pipeline [{cfg.preset}]") as run_id:
        log.info("pipeline run %s: dvc repro", run_id)
        done = subprocess.run([sys.executable, "-m", "dvc", "repro"], env=dvc_env(run_id), check=False)
        if done.returncode:
            raise AtlasError(f"dvc repro failed (exit {done.returncode}); see the stage output above")
        try:
            gate_checks.gate(cfg)
            passed, text = True, ""
        except GateFailed as exc:
            passed, text = False, str(exc)
        registered = registry.register(cfg)
    return PipelineResult(run_id, passed, text, registered)


def repro_stage(stage: str, parent_run_id: str, log_line: Callable[[str], None] = log.info) -> str:
    """`dvc repro --single-item <stage>` (what is out of date of it): "ran" or "skipped (up to date)"; a failure
    raises with the last error lines of DVC's output. The output's last lines go to `log_line`."""
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "repro", "--single-item", stage],
        env=dvc_env(parent_run_id),
        capture_output=True,
        text=True,
        check=False,
    )
    output = (proc.stdout + proc.stderr).strip()
    for line in output.splitlines()[-40:]:
        log_line(line)
    if proc.returncode:
        errors = [line for line in output.splitlines() if line.startswith(("error:", "ERROR", "Traceback"))]
        raise RuntimeError(f"dvc repro {stage} failed (exit {proc.returncode}): {' | '.join(errors[-3:])}")
    return "skipped (up to date)" if any(s in output for s in _SKIPPED) else "ran"


def gate(cfg: AtlasConfig, parent_run_id: str) -> dict:
    """The gate of a pipeline run (its MLflow run nested under `parent_run_id`); raises `GateFailed`."""
    os.environ[tracking.PARENT_ENV] = parent_run_id
    return gate_checks.gate(cfg)


def register(cfg: AtlasConfig, parent_run_id: str, flow_run_id: str | None = None) -> dict:
    """The registration of a pipeline run (its MLflow run nested under `parent_run_id`)."""
    os.environ[tracking.PARENT_ENV] = parent_run_id
    return registry.register(cfg, flow_run_id=flow_run_id)


def set_preset(preset: str, params_path: Path = paths.PARAMS) -> bool:
    """Point params.yaml at `preset` (atomically, keeping comments and other keys). Returns True if it changed."""
    if preset not in available_presets():
        raise AtlasError(f"unknown preset '{preset}' (valid presets: {', '.join(available_presets())})")
    text = params_path.read_text(encoding="utf-8") if params_path.exists() else ""
    new, count = re.subn(r"(?m)^preset:.*$", f"preset: {preset}", text)
    if not count:
        new = f"preset: {preset}\n" + text
    if new != text:
        atomic_write_text(params_path, new)
    return new != text
