"""The Prefect flow `atlas`, served as deployment `train` (`prefect deployment run atlas/train`).

The flow is the pipeline driver `atlas.ops.pipeline.run` (the one `atlas run` calls, with the same policy) with each
step as a Prefect task: one task per DVC stage (`dvc repro <stage>`: DVC skips what is up to date), then `gate` and
`register`. With a `preset` parameter other than params.yaml's, the run is a DVC experiment (`dvc exp run --temp`,
one task): the checkout's params.yaml, dvc.lock and outputs stay as they were. A failed gate fails the flow run
(nothing is registered). The stages' log lines (their progress included) stream into the logs of their task while they
run, and the flow run ends with the artifact `atlas-results`: the results table and the link to its MLflow run.
Serve it with `python -m flows.train` (what `make serve` does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from atlas.ops import pipeline

RESULTS_ARTIFACT = "atlas-results"


@task(name="pipeline-step", task_run_name="{name}", cache_policy=NO_CACHE)
def step(name: str, run: Callable[[], Any]) -> Any:
    """One step of the pipeline driver (a DVC stage, the experiment, the gate, the registration)."""
    return run()


@flow(name="atlas", log_prints=True)
def atlas_flow(preset: str | None = None) -> dict:
    """Ingest -> validate -> probe -> SFT -> GRPO -> evaluate (DVC), then gate and register (Prefect only)."""
    from prefect.runtime import flow_run

    from atlas.core.errors import GateFailed

    result = pipeline.run(
        preset,
        executor=lambda name, run: step(name, run),
        log_line=log_line,
        flow_run_id=flow_run.get_id(),
        run_name=f"flow {flow_run.get_name() or ''}".strip(),
    )
    publish_results(result)
    if not result.gate_passed:
        raise GateFailed(result.gate_text)
    return {**result.statuses, "register": result.registered}


def log_line(line: str) -> None:
    """A line of the driver or of `dvc` (the stage's own logging, progress lines included, as it comes) to the run
    logger of where it happens: the task of the step that runs, else the flow."""
    get_run_logger().info("%s", line)


def publish_results(result: pipeline.PipelineResult) -> None:
    """The flow run's artifact `atlas-results`: what `atlas results` prints, and where to open the MLflow run. A
    table that cannot be read back from MLflow is a warning: the run's outcome stands without it."""
    from prefect.artifacts import create_markdown_artifact

    from atlas.core.errors import AtlasError
    from atlas.ops.results import results_report

    try:
        markdown = results_report(result.cfg, result.run_id)
    except AtlasError as exc:
        get_run_logger().warning("no results artifact for MLflow run %s: %s", result.run_id, exc)
        return
    gate = "passed" if result.gate_passed else "failed"
    create_markdown_artifact(
        markdown, key=RESULTS_ARTIFACT, description=f"preset {result.cfg.preset}, gate {gate}, MLflow {result.run_id}"
    )


@flow(name="atlas-watch-incoming")
def watch_incoming() -> bool:
    """Emit `atlas.data.arrived` when the incoming folder's content changed since the last look."""
    from pathlib import Path

    from atlas.config import load_config
    from atlas.data import incoming

    cfg = load_config()
    changed, sha = incoming.check(cfg)  # new content is announced once (again after a failed run)
    if changed:
        incoming.notify(sha, len(list(Path(cfg.data.incoming_dir).glob("*.jsonl"))))
    get_run_logger().info("incoming data %s", "changed: retraining triggered" if changed else "unchanged")
    return changed


def build_deployments(cfg=None) -> list:
    """Deployment `atlas/train` (cron schedule + a trigger on new data, one run at a time) and the watcher."""
    from prefect.events import DeploymentEventTrigger

    from atlas.config import load_config
    from atlas.data.incoming import EVENT

    cfg = cfg or load_config()
    train = atlas_flow.to_deployment(
        name="train",
        cron=cfg.orchestration.cron,
        parameters={"preset": None},
        tags=["atlas"],
        triggers=[DeploymentEventTrigger(name="new-data", expect={EVENT})],
        concurrency_limit=1,
    )
    watcher = watch_incoming.to_deployment(
        name="watch", interval=cfg.orchestration.watch_interval_seconds, tags=["atlas"]
    )
    return [train, watcher]


def serve() -> None:
    from prefect import serve as prefect_serve

    prefect_serve(*build_deployments(), pause_on_shutdown=False)


if __name__ == "__main__":
    serve()
