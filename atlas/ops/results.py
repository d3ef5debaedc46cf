"""`atlas results`: the results table of a pipeline run, read back from MLflow (not from local files), so a table
pasted into the README names the run it came from."""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core.errors import AtlasError
from atlas.ops import tracking

log = logging.getLogger(__name__)

# What a pipeline run carries of its evaluation, per teacher, so MLflow's runs table and Compare put runs side by
# side (the nested evaluate run has every metric; a pipeline run whose stages were up to date still gets these).
HEADLINE_KEYS = (
    "baseline_accuracy",
    "taught_accuracy",
    "accuracy_delta",
    "accuracy_delta_ci_low",
    "accuracy_delta_ci_high",
    "non_degradation_rate",
    "completion_rate_taught",
    "teaching_tokens",
)


def headline_metrics(eval_json: dict) -> dict:
    """The headline of a `reports/eval.json`: `<teacher>.<key>` for `HEADLINE_KEYS`, and each paired difference
    (`paired.grpo-sft.difference`, `.ci_low`, `.ci_high`, ...), as a nested dict for `tracking.log_run_metrics`."""
    out: dict = {}
    for name, teacher in eval_json.get("teachers", {}).items():
        overall = teacher.get("overall", {})
        out[name] = {k: overall[k] for k in HEADLINE_KEYS if overall.get(k) is not None}
    if eval_json.get("paired"):
        out["paired"] = eval_json["paired"]
    return out


def log_headline(run_id: str, eval_path: Path) -> dict[str, float]:
    """Log the headline of `eval_path` into the pipeline run `run_id`; a missing report is a warning (the stages
    failed before it, and say so themselves)."""
    if not eval_path.exists():
        log.warning("%s is missing: pipeline run %s carries no headline metrics", eval_path, run_id)
        return {}
    metrics = tracking.log_run_metrics(run_id, headline_metrics(json.loads(eval_path.read_text(encoding="utf-8"))))
    log.info("pipeline run %s: %d headline metrics from %s", run_id, len(metrics), eval_path)
    return metrics


def _pipeline_run(client, experiment: str, run_id: str | None):
    if run_id:
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(run_id)
        except MlflowException:
            raise AtlasError(
                f"no MLflow run with id '{run_id}' in {tracking.tracking_uri()}: `atlas results` without --run-id "
                "shows the latest finished pipeline run"
            ) from None
        if run.info.experiment_id != experiment or run.data.tags.get(tracking.PIPELINE_TAG) != "true":
            raise AtlasError(f"MLflow run '{run_id}' is not a pipeline run of this experiment: pass a pipeline run id")
        return run
    runs = client.search_runs(
        [experiment],
        f"tags.`{tracking.PIPELINE_TAG}` = 'true' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        raise AtlasError("no finished pipeline run in MLflow yet: run `make run` (or `atlas run`) first")
    return runs[0]


def results_markdown(cfg: AtlasConfig, run_id: str | None = None) -> str:
    """The evaluation summary of a pipeline run (its nested `evaluate` run's eval.json), headed by the run's name,
    id, preset, wall time and gate outcome."""
    from mlflow import MlflowClient

    from atlas.teaching.report import summary_markdown

    tracking.get_mlflow()
    client = MlflowClient()
    exp = tracking.experiment_id(cfg.tracking.experiment)
    parent = _pipeline_run(client, exp, run_id)
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_stage = {}
    for child in sorted(children, key=lambda r: r.info.start_time):
        by_stage[child.data.tags.get(tracking.STAGE_TAG)] = child
    evaluate = by_stage.get("evaluate")
    if evaluate is None:
        # the stage was up to date in this run: the newest evaluate run is the one whose outputs were reused
        runs = client.search_runs([exp], f"tags.`{tracking.STAGE_TAG}` = 'evaluate'", order_by=["start_time DESC"])
        if not runs:
            raise AtlasError(f"pipeline run {parent.info.run_id} has no evaluation")
        evaluate = runs[0]
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(evaluate.info.run_id, "eval/eval.json", tmp)
        eval_json = json.loads(Path(local).read_text(encoding="utf-8"))
    minutes = (parent.info.end_time - parent.info.start_time) / 60_000 if parent.info.end_time else None
    started = datetime.fromtimestamp(parent.info.start_time / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")
    gate = by_stage.get("gate")
    gate_text = "not run" if gate is None else ("passed" if gate.data.metrics.get("gate.passed") else "failed")
    head = [
        f"MLflow pipeline run `{parent.info.run_name}` (id `{parent.info.run_id}`), evaluation run "
        f"`{evaluate.info.run_id}`; preset `{parent.data.tags.get('atlas.preset')}`, started {started}, "
        + (f"wall time {minutes:.1f} min, " if minutes else "")
        + f"gate {gate_text}.",
        "",
        "",
    ]
    body = summary_markdown(eval_json).split("\n", 2)[2]  # drop the "# Evaluation summary" title
    return "\n".join(head) + body


# MLflow 3.17's UI opens in its GenAI view (an empty traces overview) whatever the experiment's
# `mlflow.experimentKind`; this query parameter opens the model-training view (runs, metrics, Compare), and the UI
# keeps it while one navigates.
MODEL_TRAINING_VIEW = "workflowType=machine_learning"


def run_link(uri: str, experiment_id: str, run_id: str) -> str:
    """Where to open a run of the tracking store `uri`: a link when it is an MLflow server, else the run id and how to
    serve the store (`make ui` for the project's own one)."""
    page = f"#/experiments/{experiment_id}/runs/{run_id}?{MODEL_TRAINING_VIEW}"
    if uri.startswith(("http://", "https://")):
        return f"MLflow run: [{run_id}]({tracking.without_credentials(uri).rstrip('/')}/{page})"
    command = f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000"
    return (
        f"MLflow run `{run_id}` in `{uri}`: serve the store with `{command}` (the project's own store: `make ui`), "
        f"then open http://127.0.0.1:5000/{page}"
    )


def results_report(cfg: AtlasConfig, run_id: str) -> str:
    """The results table of pipeline run `run_id` and where to open it in MLflow (the flow run's artifact)."""
    table = results_markdown(cfg, run_id)
    link = run_link(tracking.tracking_uri(), tracking.experiment_id(cfg.tracking.experiment), run_id)
    return f"# ATLAS results\n\n{table}\n\n{link}\n"
