"""A Trainer callback that sends every logged number to the active MLflow run (the stage's run), with the step.

We log ourselves instead of `report_to="mlflow"` so the metrics land in the stage's nested run, under names we
choose, together with the teaching statistics that the GRPO reward functions collect per batch.
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback


class MlflowMetricsCallback(TrainerCallback):
    def __init__(self, prefix: str, extra: Callable[[], dict[str, float]] | None = None):
        self.prefix = prefix
        self.extra = extra

    def on_log(self, args, state, control, logs=None, **kwargs):
        import mlflow

        if mlflow.active_run() is None or not logs:
            return
        values = dict(logs)
        if self.extra is not None:
            values.update(self.extra())
        numeric = {
            f"{self.prefix}/{k}": float(v)
            for k, v in values.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and v == v
        }
        if numeric:
            mlflow.log_metrics(numeric, step=state.global_step)
