"""The Prefect flow `atlas`, served as deployment `train` (`prefect deployment run atlas/train`).

One task per DVC stage (`atlas.stages.STAGES`), each running `dvc repro <stage>` through the pipeline driver
`atlas.ops.pipeline` (one DAG, one lock file, one cache: DVC skips what is up to date), then the Prefect-only tasks
`gate` and `register`. The `preset` parameter reaches DVC through params.yaml,
never through an environment variable DVC cannot see. Serve it with `python -m flows.train` (what `make serve` does).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from atlas.ops import pipeline
from atlas.stages import STAGES


@task(name="dvc-repro", task_run_name="dvc repro {stage}")
def dvc_repro(stage: str, parent_run_id: str) -> str:
    """Run one DVC stage (and whatever it depends on that is out of date); DVC says when it was up to date."""
    logger = get_run_logger()
    return pipeline.repro_stage(stage, parent_run_id, log_line=lambda line: logger.info("%s", line))


@task(name="gate")
def gate_task(parent_run_id: str) -> dict:
    from atlas.config import load_config

    return pipeline.gate(load_config(), parent_run_id)


@task(name="register")
def register_task(parent_run_id: str, flow_run_id: str | None) -> dict:
    from atlas.config import load_config

    return pipeline.register(load_config(), parent_run_id, flow_run_id=flow_run_id)


@flow(name="atlas", log_prints=True)
def atlas_flow(preset: str | None = None) -> dict:
    """Ingest -> validate -> probe -> SFT -> GRPO -> evaluate (DVC), then gate and register (Prefect only)."""
    from prefect.runtime import flow_run

    from atlas.config import load_config
    from atlas.ops import tracking

    logger = get_run_logger()
    if preset and pipeline.set_preset(preset):
        logger.info("params.yaml now uses preset '%s'", preset)
    cfg = load_config()
    status = {}
    with tracking.pipeline_run(cfg, name=f"pipeline [{cfg.preset}] flow {flow_run.get_name() or ''}") as run_id:
        for stage in STAGES:
            status[stage] = dvc_repro(stage, run_id)
            logger.info("stage %s: %s", stage, status[stage])
        status["gate"] = gate_task(run_id)
        status["register"] = register_task(run_id, flow_run.get_id())
    return status


@flow(name="atlas-watch-incoming")
def watch_incoming() -> bool:
    """Emit `atlas.data.arrived` when the incoming folder's content changed since the last look."""
    from pathlib import Path

    from atlas.config import load_config
    from atlas.data import incoming

    cfg = load_config()
    changed, sha = incoming.check(cfg)
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
