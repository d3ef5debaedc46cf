"""Running a stage inside its MLflow run: the run (nested under the pipeline's parent run when there is one), the
configuration as params, then what the stage returned as metrics and the files it wrote as artifacts. The CLI (and so
`dvc.yaml`) runs every stage through `run_stage`; the stages themselves know nothing of MLflow runs.

Before a stage does any work: it takes the stage's lock (one `atlas <stage>` at a time in a project: a second one
stops with one line instead of touching the first one's work folder); then, in this order, the configuration of the
inputs must match (`check_upstream_config`), the RIM config and judge cache must open (`open_judges`), the
configured device must be usable and its inputs must exist (`preflight`: a missing one names the stage that makes
it), and the MLflow store must answer (`tracking`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from atlas.config import AtlasConfig, config_to_flat_dict
from atlas.core import locks, paths
from atlas.core.errors import AtlasError, InputError
from atlas.core.io import read_json
from atlas.ops import tracking
from atlas.stages import STAGES, evaluate, grpo, ingest, models, probe, rule, sft, validate
from atlas.stages import config as config_stage

log = logging.getLogger(__name__)

MODULES = {
    m.__name__.rsplit(".", 1)[1]: m for m in (config_stage, models, ingest, validate, probe, sft, rule, grpo, evaluate)
}
# Files logged even when the stage fails (they say why it failed).
ALWAYS_LOGGED = {
    "validate": ((paths.VALIDATION_REPORT, "data"), (paths.QUARANTINE, "data"), (paths.DATASET_CARD, "data"))
}


def run_stage(cfg: AtlasConfig, name: str, **options) -> dict:
    """`atlas.stages.<name>.run(cfg, **options)` inside its MLflow run (the `config` stage has none: it only writes
    the section files)."""
    if name not in STAGES:
        raise AtlasError(f"unknown stage '{name}' (stages: {', '.join(STAGES)})")
    if name == "config":
        return MODULES[name].run(cfg, **options)
    with stage_lock(name):
        return _run_tracked(cfg, name, **options)


def stage_lock(name: str):
    """The lock of stage `name` (held by the main process; the workers of an `accelerate launch` run share it)."""
    from contextlib import nullcontext

    if not tracking.is_main_process():
        return nullcontext()
    return locks.hold(paths.LOCKS_DIR / f"{name}.lock", f"`atlas {name}`")


def required_inputs(cfg: AtlasConfig, name: str) -> list[Path]:
    """The files and folders stage `name` reads that earlier stages write."""
    student, teacher = paths.MODELS_DIR / "student", paths.MODELS_DIR / "teacher"
    teachers = [paths.TEACHER_CHECKPOINTS[t] for t in cfg.evaluation.teachers if t in paths.TEACHER_CHECKPOINTS]
    sft = [teacher]
    if cfg.sft.enabled:
        sft.append(paths.SFT_DATA)
        if cfg.sft.use_student_probe or cfg.sft.targets != "dataset":
            sft.append(paths.PROBES)
    needs = {
        "validate": [paths.RECORDS],
        "probe": [paths.TRAIN, paths.EVAL, student],
        "sft": sft,
        "rule": sft,
        "grpo": [paths.PROBES, paths.SFT_CHECKPOINT, student],
        "evaluate": [paths.PROBES, student, *teachers],
    }
    return needs.get(name, [])


def preflight(cfg: AtlasConfig, name: str) -> None:
    """Fail in one line, before any work: a TRL argument the pinned TRL does not have, a device that cannot be
    used, an input that is missing (naming the stage that makes it)."""
    if name in ("sft", "grpo"):
        from atlas.training.configs import check_stage_args

        check_stage_args(cfg, name)
    local_student = not cfg.models.student_endpoint.base_url
    if name in ("sft", "grpo", "evaluate") or (name == "probe" and local_student):  # stages that load a model here
        from atlas.llm.models import resolve_device

        resolve_device(cfg.models.device)
    missing = [p for p in required_inputs(cfg, name) if not p.exists() or (p.is_dir() and not any(p.iterdir()))]
    if missing:
        makers = sorted({paths.made_by(p) for p in missing if paths.made_by(p)}, key=STAGES.index)
        listed = ", ".join(f"{p} (made by `atlas {paths.made_by(p)}`)" for p in missing)
        run = ", ".join(f"`atlas {m}`" for m in makers)
        raise InputError(f"`atlas {name}` needs {listed}: run {run} first (or `dvc repro {name}`)")


def _run_tracked(cfg: AtlasConfig, name: str, **options) -> dict:
    # What the user asked for first (an override the inputs were not made with, the RIM config and its cache): its
    # fix comes before rebuilding missing inputs, which would otherwise be rebuilt without it. Then the machine and
    # the inputs (`preflight`). All of these before any work and before the stage's MLflow run.
    check_upstream_config(cfg, name)
    open_judges(cfg, name)
    preflight(cfg, name)
    tags = {"atlas.source": options.get("source") or cfg.data.source} if name == "ingest" else None
    with tracking.stage_run(cfg, name, tags=tags):
        try:
            summary = MODULES[name].run(cfg, **options)
        finally:
            for path, where in ALWAYS_LOGGED.get(name, ()):
                tracking.log_artifact(path, where)
        LOGGERS[name](cfg, summary)
    return summary


def upstream_sections(stage: str, dvc_yaml: Path = Path("dvc.yaml")) -> dict[str, list[str]]:
    """{config section: the stages before `stage` (in dvc.yaml) whose outputs `stage` reads, made with it}."""
    import yaml

    stages = (yaml.safe_load(dvc_yaml.read_text(encoding="utf-8")) or {}).get("stages", {}) if dvc_yaml.exists() else {}

    def deps(name: str) -> list[str]:
        return [str(d) for d in stages.get(name, {}).get("deps", [])]

    def outs(name: str) -> list[str]:
        return [next(iter(o)) if isinstance(o, dict) else str(o) for o in stages.get(name, {}).get("outs", [])]

    def feeds(producer: str, consumer: str) -> bool:
        return any(d == o or d.startswith(o.rstrip("/") + "/") for d in deps(consumer) for o in outs(producer))

    sections: dict[str, list[str]] = {}
    seen, todo = set(), [stage]
    while todo:
        consumer = todo.pop()
        for producer in stages:
            if producer not in seen and producer != "config" and feeds(producer, consumer):
                seen.add(producer)
                todo.append(producer)
                for dep in deps(producer):
                    if dep.startswith(f"{paths.CONFIG_DIR}/") and dep.endswith(".json"):
                        sections.setdefault(Path(dep).stem, []).append(producer)
    return sections


def check_upstream_config(cfg: AtlasConfig, stage: str) -> None:
    """A stage reads what the stages before it made, under the configuration recorded in data/config/. A value of
    one of their sections that differs now (a `--set`, or params.yaml edited since the last `dvc repro`) would be
    silently ignored by those outputs: refuse it and say where it belongs."""
    problems = []
    for section, producers in sorted(upstream_sections(stage).items()):
        recorded_file = paths.CONFIG_DIR / f"{section}.json"
        if not recorded_file.exists():
            continue
        recorded = config_to_flat_dict(type(getattr(cfg, section)).model_validate(read_json(recorded_file)[section]))
        now = config_to_flat_dict(getattr(cfg, section))
        for key in sorted(set(recorded) | set(now)):
            if recorded.get(key) != now.get(key):
                problems.append(
                    f"{section}.{key}={now.get(key)!r}: the outputs of {', '.join(sorted(set(producers)))} that "
                    f"`atlas {stage}` reads were made with {recorded.get(key)!r} ({recorded_file})"
                )
    if problems:
        problems.append(
            "set it in params.yaml and run `dvc repro` (or `dvc exp run --set-param KEY=VALUE`) so those stages "
            "run with it"
        )
        raise AtlasError("\n".join(problems))


def open_judges(cfg: AtlasConfig, name: str) -> None:
    """What a stage can check before it does any work: a stage that calls RIM loads its configuration (a bad RIM
    config fails now, not after the generation) and opens its judge cache (a corrupt cache file is moved aside now,
    with a warning naming it, instead of ending the stage in a traceback after all its work)."""
    uses_rim = (name == "grpo" and cfg.reward.rim_weight) or (name == "evaluate" and cfg.evaluation.rim)
    if not uses_rim:
        return
    from atlas.rim import load_rim_config
    from atlas.rim.cache import ReplyCache

    rim_cfg = load_rim_config(cfg.rim.config_path, cfg.rim.overrides)
    if rim_cfg.cache.enabled:
        ReplyCache(rim_cfg.cache.path).close()


def _metrics(prefix: str, drop: tuple[str, ...] = ()) -> Callable[[AtlasConfig, dict], None]:
    def log_summary(cfg: AtlasConfig, summary: dict) -> None:
        tracking.log_metrics({k: v for k, v in summary.items() if k not in drop}, prefix=prefix)

    return log_summary


def _log_ingest(cfg: AtlasConfig, summary: dict) -> None:
    tracking.log_metrics({k: v for k, v in summary.items() if k != "content_hash"}, prefix="ingest")
    for report in summary.get("rejected_reports", []):  # why a drop was set aside, next to the run that did it
        tracking.log_artifact(report, "data/rejected")


def _log_evaluation(cfg: AtlasConfig, result: dict) -> None:
    if result.get("split") == "dev":  # a design run: its metrics carry the split's name, the held-out ones stay clean
        for name, teacher in result["teachers"].items():
            tracking.log_metrics(teacher["overall"], prefix=f"dev.{name}")
        for pair, difference in result.get("paired", {}).items():
            tracking.log_metrics(difference, prefix=f"dev.paired.{pair}")
        tracking.log_artifact(paths.DEV_REPORTS_DIR / paths.EVAL_METRICS.name, "dev")
        _log_teaching_traces(paths.DEV_REPORTS_DIR / paths.EVAL_OUTCOMES.name, "dev/teaching_traces.json")
        return
    for name, teacher in result["teachers"].items():
        tracking.log_metrics(teacher["overall"], prefix=name)
        tracking.log_metrics(teacher.get("rim", {}), prefix=f"{name}.rim")
    for pair, difference in result.get("paired", {}).items():  # e.g. paired.grpo-sft.difference / .ci_low
        tracking.log_metrics(difference, prefix=f"paired.{pair}")
    tracking.log_teacher_runs(cfg, result["teachers"])  # `teacher sft` vs `teacher grpo` in MLflow's Compare
    for path in (paths.EVAL_METRICS, paths.EVAL_OUTCOMES, paths.EVAL_SUMMARY):
        tracking.log_artifact(path, "eval")
    _log_problem_table()
    _log_teaching_traces(paths.EVAL_OUTCOMES, "eval/teaching_traces.json")
    for png in sorted(paths.REPORTS_DIR.glob("*.png")):
        tracking.log_artifact(png, "eval/plots")
    _log_training_curves(cfg)


def _log_problem_table() -> None:
    """Per-problem outcomes as an MLflow table (browsable in the UI's artifact view)."""
    from atlas.teaching.metrics import problem_table, read_outcomes

    if tracking.is_main_process():
        import pandas as pd

        table = pd.DataFrame(problem_table(read_outcomes(paths.EVAL_OUTCOMES)))
        tracking.get_mlflow().log_table(table, "eval/problem_outcomes.json")


def _log_teaching_traces(outcomes: Path, artifact_file: str) -> None:
    """Each interaction's text (problem, attempt, probe, guidance, taught answer) with its grades and RIM score, as
    an MLflow table: the run's artifact view shows it as a table (`atlas.ops.traces`)."""
    from atlas.ops.traces import read_traces, traces_frame

    if tracking.is_main_process() and outcomes.exists():
        rows = read_traces(outcomes, paths.PROBES)
        tracking.get_mlflow().log_table(traces_frame(rows), artifact_file)
        log.info("logged %d teaching traces to the MLflow run (%s)", len(rows), artifact_file)


def _log_training_curves(cfg: AtlasConfig) -> None:
    """Plot the GRPO reward and accuracy-delta curves of this pipeline's GRPO run (from MLflow history)."""
    from mlflow import MlflowClient

    from atlas.teaching.report import plot_training_curves

    parent = os.environ.get(tracking.PARENT_ENV)
    client = MlflowClient()
    exp = tracking.experiment_id(cfg.tracking.experiment)
    query = f"tags.`{tracking.STAGE_TAG}` = 'grpo'"
    if parent:
        query += f" and tags.`mlflow.parentRunId` = '{parent}'"
    runs = client.search_runs([exp], query, order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        return
    history = {}
    for key in ("grpo/reward", "grpo/teach/accuracy_delta", "grpo/teach/degradation_rate"):
        points = client.get_metric_history(runs[0].info.run_id, key)
        if points:
            history[key.removeprefix("grpo/")] = [(p.step, p.value) for p in points]
    if history:
        path = plot_training_curves(history, paths.STATE_DIR / "plots" / "grpo_curves.png")
        tracking.log_artifact(path, "eval/plots")


# What each tracked stage logs from its summary.
LOGGERS: dict[str, Callable[[AtlasConfig, dict], None]] = {
    "models": lambda cfg, summary: tracking.set_tags(
        {f"atlas.{k}": v for k, v in summary.items() if k.endswith("dtype") or k == "native_bf16"}
    ),
    "ingest": _log_ingest,
    "validate": _metrics("validate"),
    "probe": _metrics("probe"),
    "sft": _metrics("sft_summary"),
    "rule": _metrics("rule_summary"),
    "grpo": _metrics("grpo_summary", drop=("first", "last")),
    "evaluate": _log_evaluation,
}
