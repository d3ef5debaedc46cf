"""THE pipeline driver: `atlas run` and the Prefect flow `atlas` (flows/train.py) both call `run`, with one policy.

One parent MLflow run per pipeline run. DVC runs the stages of `atlas.stages.STAGES` (one DAG, one lock file, one
cache; each stage process nests its MLflow run under the parent through `ATLAS_PARENT_RUN_ID`), then the gate and
the registration run here, outside DVC (registry side effects do not belong in a DVC stage). The policy:

- a stage is "skipped (up to date)" when DVC's own state says so (`dvc status` of that stage is empty), else "ran";
- a failed stage ends the run; the gate runs only on outputs DVC produced in this run's configuration;
- only a teacher that passed the gate is registered (`atlas.ops.registry.register` then decides, by lineage,
  promotion switch and checkpoint hash, whether it becomes a new version and whether it moves `champion`);
- after the stages succeeded: the incoming data counts as trained on, and the outputs are pushed to the DVC remote.

Where the run happens. The checkout's configuration is params.yaml, and the run is `dvc repro` in the checkout. A
run asked for another preset or for overrides (`atlas run --preset tiny --set grpo.max_steps=7`, the flow's `preset`
parameter) is a DVC experiment, `dvc exp run --temp --set-param ...` with every value that differs: params.yaml,
dvc.lock and the outputs of the checkout stay as they were (DVC's run cache still reuses any stage already computed
with the same inputs), the experiment is recorded by DVC (`dvc exp show`), and its outputs are read back from DVC into
`.atlas/experiments/<name>/` for the gate and the registration.

The driver's children die with it: `dvc` gets SIGKILL when the driver dies, and every stage process watches the
driver and stops its process group when the driver is gone (`atlas.core.process`).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.config import AtlasConfig, differences, load_config
from atlas.core import paths, process
from atlas.core.errors import AtlasError, GateFailed
from atlas.data import incoming
from atlas.ops import gate as gate_checks
from atlas.ops import registry, tracking
from atlas.ops.results import log_headline
from atlas.stages import STAGES

log = logging.getLogger(__name__)

UP_TO_DATE = "skipped (up to date)"
RAN = "ran"
EXPERIMENTS_DIR = paths.STATE_DIR / "experiments"
# What the gate and the registration read of an experiment's outputs (data/config: the protocol the registered
# pyfunc model runs, `teacher_model.pipeline_model_config`).
EXPERIMENT_FILES = (
    "dvc.lock",
    "params.yaml",
    "reports",
    "data/config",
    "data/checkpoints",
    "data/probe",
    "data/models",
)

Executor = Callable[[str, Callable[[], Any]], Any]


def direct(name: str, step: Callable[[], Any]) -> Any:
    """Run a step in this process (what `atlas run` does; the flow runs each step as a Prefect task)."""
    return step()


@dataclass(frozen=True)
class PipelineResult:
    run_id: str
    cfg: AtlasConfig
    statuses: dict[str, str]
    gate_passed: bool
    gate_text: str  # the gate's lines when it failed, else ""
    registered: dict | None  # None when the gate did not pass
    experiment: str | None = None  # the DVC experiment's name when the run was one
    pushed: bool | None = None  # outputs pushed to the DVC remote (None: not attempted)
    root: Path = field(default=Path("."))  # where the run's outputs are


def dvc_env(parent_run_id: str) -> dict[str, str]:
    """The environment of a `dvc` command: this interpreter's bin first (stage commands call `atlas`), the
    project's own code first on the import path (a DVC experiment runs a copy of it), the parent
    MLflow run for the stage runs to nest under, the driver for them to watch, and absolute MLflow locations (an
    experiment runs in a temporary folder)."""
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    pythonpath = os.pathsep.join(p for p in (".", os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": pythonpath,  # a stage runs the code of the tree DVC hashes (its cwd), not another checkout's
        tracking.PARENT_ENV: parent_run_id,
        "MLFLOW_TRACKING_URI": tracking.tracking_uri(),
        "ATLAS_ARTIFACT_ROOT": tracking.artifact_root(),
        # The stage's output is a pipe to the logs: tqdm's bars (transformers' "Loading weights", TRL's step bar)
        # would turn each `\r` update into a log line; the stages log their progress instead (`atlas.core.progress`).
        "TQDM_DISABLE": "1",
        **process.driver_env(),
    }


def _dvc(args: Sequence[str], parent_run_id: str, log_line: Callable[[str], None]) -> subprocess.CompletedProcess:
    """A `dvc` command as a child that dies with this process, in its own process group; its output goes to
    `log_line` line by line as it comes."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dvc", *args],
        env=dvc_env(parent_run_id),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=process.die_with_parent,
        start_new_session=True,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line.rstrip("\n"))
        log_line(lines[-1])
    return subprocess.CompletedProcess(proc.args, proc.wait(), "\n".join(lines), "")


def _failure(what: str, done: subprocess.CompletedProcess) -> AtlasError:
    lines = done.stdout.splitlines()
    errors = [line for line in lines if line.startswith(("error:", "ERROR", "Traceback"))] or lines[-3:]
    return AtlasError(f"{what} failed (exit {done.returncode}): {' | '.join(errors[-3:])}")


def stage_up_to_date(stage: str) -> bool:
    """DVC's own verdict: `dvc status` of the stage alone (its deps, params and outs against dvc.lock) is empty."""
    from dvc.repo import Repo

    with Repo(".") as repo:
        return not repo.status(targets=[stage])


def repro_stage(stage: str, parent_run_id: str, log_line: Callable[[str], None] = log.info) -> str:
    """`dvc repro --single-item <stage>` when DVC says it is out of date: "ran" or "skipped (up to date)"; a failure
    raises with the last error lines of DVC's output."""
    if stage_up_to_date(stage):
        log_line(f"stage '{stage}' is up to date (dvc status)")
        return UP_TO_DATE
    done = _dvc(["repro", "--single-item", stage], parent_run_id, log_line)
    if done.returncode:
        raise _failure(f"dvc repro {stage}", done)
    return RAN


# -- experiments --------------------------------------------------------------------------------------------------


def _hydra(value: Any, key: str) -> str:
    """A value in the override grammar `dvc exp run --set-param` takes (Hydra's)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if "'" not in value and "\\" not in value:
            return f"'{value}'"
        if '"' not in value and "\\" not in value:
            return f'"{value}"'
    elif isinstance(value, list):
        return "[" + ",".join(_hydra(v, key) for v in value) + "]"
    elif isinstance(value, dict) and all(re.fullmatch(r"[A-Za-z_][\w-]*", str(k)) for k in value):
        return "{" + ",".join(f"{k}:{_hydra(v, f'{key}.{k}')}" for k, v in value.items()) + "}"
    raise AtlasError(f"{key}={value!r} cannot be passed to `dvc exp run --set-param`: set it in params.yaml instead")


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a params mapping; the free-form mappings of the schema (trl_args, ...) stay whole."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        free_form = key in ("trl_args", "peft_args", "overrides")
        if isinstance(value, dict) and value and not free_form:
            out.update(_leaves(value, f"{name}."))
        else:
            out[name] = value
    return out


def set_params(cfg: AtlasConfig, params_path: Path = paths.PARAMS) -> list[str]:
    """The `--set-param` overrides that turn params.yaml into the complete configuration `cfg`."""
    import yaml

    from atlas.core.settings import read_yaml

    current = _leaves(read_yaml(params_path)) if params_path.exists() else {}
    wanted = _leaves(yaml.safe_load(_params_text(cfg)))
    changed = [f"++{k}={_hydra(v, k)}" for k, v in wanted.items() if k not in current or current[k] != v]
    return changed + [f"~{k}" for k in current if k not in wanted and not any(k.startswith(w + ".") for w in wanted)]


def _params_text(cfg: AtlasConfig) -> str:
    from atlas.config import params_yaml

    return params_yaml(cfg)


def _experiment_rev(name: str) -> str:
    out = subprocess.run(
        ["git", "for-each-ref", "--format=%(objectname) %(refname)", "refs/exps"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    revs = [line.split()[0] for line in out.splitlines() if line.endswith(f"/{name}")]
    if not revs:
        raise AtlasError(f"dvc exp run did not record experiment '{name}' (git refs/exps)")
    return revs[-1]


def run_experiment(cfg: AtlasConfig, parent_run_id: str, log_line: Callable[[str], None] = log.info) -> str:
    """`dvc exp run --temp` with the values of `cfg` (checkout untouched); returns the experiment's name after
    checking that DVC ran exactly this configuration."""
    name = f"atlas-{parent_run_id[:10]}"
    overrides = set_params(cfg)
    args = ["exp", "run", "--temp", "--name", name]
    for item in overrides:
        args += ["--set-param", item]
    log_line(f"dvc exp run --temp --name {name} ({len(overrides)} values set)")
    done = _dvc(args, parent_run_id, log_line)
    if done.returncode:
        raise _failure("dvc exp run", done)
    rev = _experiment_rev(name)
    shown = subprocess.run(["git", "show", f"{rev}:params.yaml"], capture_output=True, text=True, check=True)
    scratch = EXPERIMENTS_DIR / name
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "params.yaml").write_text(shown.stdout, encoding="utf-8")
    ran = load_config(scratch / "params.yaml")
    wrong = differences(cfg, ran)
    if wrong:
        detail = ", ".join(f"{k}: asked {a!r}, DVC ran {b!r}" for k, a, b in wrong[:5])
        raise AtlasError(f"experiment {name} did not run the asked configuration ({detail})")
    return name


def materialize(name: str) -> Path:
    """The experiment's outputs that the gate and the registration read, from DVC, in `.atlas/experiments/<name>`."""
    from dvc.api import DVCFileSystem

    rev = _experiment_rev(name)
    root = EXPERIMENTS_DIR / name
    fs = DVCFileSystem(".", rev=rev)
    for item in EXPERIMENT_FILES:
        if not fs.exists(item):
            continue
        dest = root / item
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get(item, str(dest), recursive=fs.isdir(item))
    (root / "EXPERIMENT").write_text(f"{name} {rev}\n", encoding="utf-8")
    return root


@contextmanager
def working_dir(root: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(root)
    try:
        yield
    finally:
        os.chdir(before)


# -- the DVC remote -------------------------------------------------------------------------------------------------


def push(log_line: Callable[[str], None] = log.info) -> bool | None:
    """`dvc push` to the default remote (a local remote's folder is created first). None when no remote is set."""
    remote = subprocess.run([sys.executable, "-m", "dvc", "remote", "default"], capture_output=True, text=True)
    name = remote.stdout.strip()
    if remote.returncode or not name:
        log.warning("no default DVC remote: outputs not pushed (`dvc remote add -d NAME URL` to set one)")
        return None
    url = subprocess.run(
        [sys.executable, "-m", "dvc", "config", f"remote.{name}.url"], capture_output=True, text=True
    ).stdout.strip()
    if url and "://" not in url:  # a local folder, relative to .dvc/
        (Path(".dvc") / url).resolve().mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-m", "dvc", "push"], capture_output=True, text=True)
    for line in (done.stdout + done.stderr).strip().splitlines()[-3:]:
        log_line(line)
    if done.returncode:
        log.error(
            "dvc push to '%s' failed (exit %d): this run's data cannot be pulled elsewhere", name, done.returncode
        )
        return False
    return True


# -- the run --------------------------------------------------------------------------------------------------------


def resolve(
    preset: str | None = None, overrides: Sequence[str] = (), params_path: Path | str = paths.PARAMS
) -> tuple[AtlasConfig, bool]:
    """(configuration, is an experiment): the checkout's params.yaml, or another preset / overrides on top of it."""
    params_path = Path(params_path)
    if params_path.resolve() != paths.PARAMS.resolve():
        raise AtlasError(
            f"a pipeline run reads {paths.PARAMS} (what DVC sees), not {params_path}: copy your values there, or "
            "pass them with --set (a DVC experiment)"
        )
    base = load_config(params_path)
    other = preset if preset and preset != base.preset else None
    if not other and not overrides:
        return base, False
    cfg = load_config(params_path, overrides=list(overrides), preset=other)
    return cfg, bool(differences(base, cfg)) or bool(other)


def run(
    preset: str | None = None,
    overrides: Sequence[str] = (),
    *,
    params_path: Path | str = paths.PARAMS,
    executor: Executor = direct,
    log_line: Callable[[str], None] = log.info,
    flow_run_id: str | None = None,
    run_name: str = "",
) -> PipelineResult:
    """One pipeline run (see the module docstring): stages, then gate, then registration of a passed teacher."""
    cfg, experiment = resolve(preset, overrides, params_path)
    os.environ["MLFLOW_TRACKING_URI"] = tracking.tracking_uri()  # absolute: the gate may run in another folder
    os.environ["ATLAS_ARTIFACT_ROOT"] = tracking.artifact_root()
    data_hash = incoming.content_hash(Path(cfg.data.incoming_dir))
    statuses: dict[str, str] = {}
    name = f"pipeline [{cfg.preset}]" + (" experiment" if experiment else "") + (f" {run_name}" if run_name else "")
    with tracking.pipeline_run(cfg, name=name) as run_id:
        exp_name, root, pushed = None, Path("."), None
        try:
            if experiment:
                exp_name = executor("dvc exp run", lambda: run_experiment(cfg, run_id, log_line))
                statuses["experiment"] = exp_name
                root = materialize(exp_name)
            else:
                for stage in STAGES:
                    statuses[stage] = executor(f"dvc repro {stage}", lambda s=stage: repro_stage(s, run_id, log_line))
                    log_line(f"stage {stage}: {statuses[stage]}")
        except BaseException:
            incoming.mark_failed()
            raise
        incoming.mark_trained(data_hash)
        if not experiment:
            pushed = push(log_line)
        provenance = registry.collect_provenance(root, exp_name, pushed)
        with working_dir(root):
            log_headline(run_id, paths.EVAL_METRICS)  # what this run's outputs score, for MLflow's Compare
            try:
                executor("gate", lambda: gate_checks.gate(cfg))
                statuses["gate"] = "passed"
                passed, text = True, ""
            except GateFailed as exc:
                statuses["gate"] = "failed"
                passed, text = False, str(exc)
            tracking.log_run_metrics(run_id, {"gate.passed": passed})
            registered = None
            if passed:
                registered = executor(
                    "register", lambda: registry.register(cfg, flow_run_id=flow_run_id, provenance=provenance)
                )
                statuses["register"] = registered["outcome"]
    return PipelineResult(run_id, cfg, statuses, passed, text, registered, exp_name, pushed, root)
