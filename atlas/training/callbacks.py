"""Trainer callbacks of the training stages: every logged number to the active MLflow run (the stage's run), with the
step, and the completion marker and rotation of checkpoints (`KeepCheckpoints`, see `atlas.training.checkpoints`).

We log ourselves instead of `report_to="mlflow"` so the metrics land in the stage's nested run, under names we
choose, together with the teaching statistics that the GRPO reward functions collect per batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

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


class MlflowRimExplanationsCallback(TrainerCallback):
    """At each logging step, the RIM explanations of the completions since the last one (`source.drain()`: rows of
    `RolloutRIMReward`) appended, with the step, to the table `grpo/rim_explanations.json` of the active MLflow run
    (the artifact view shows it as a table), beside the `grpo/rim_rewards/*` and `grpo/escalation_rate`
    metrics of the same step."""

    artifact_file = "grpo/rim_explanations.json"

    def __init__(self, source):
        self.source = source

    def on_log(self, args, state, control, logs=None, **kwargs):
        import mlflow

        rows = self.source.drain()
        if not rows or mlflow.active_run() is None or not state.is_world_process_zero:
            return
        import pandas as pd

        mlflow.log_table(pd.DataFrame([{"step": state.global_step, **row} for row in rows]), self.artifact_file)


class KeepCheckpoints(TrainerCallback):
    """After the trainer wrote a checkpoint (`on_save` runs once it is all on disk): mark it complete, then keep only
    the newest `keep` complete ones (None keeps all). Used instead of TRL's `save_total_limit`, which deletes old
    checkpoints before a resumable marker exists. No checkpoint at the last step: the stage saves the trained model
    itself right after, and a run killed before that redoes the last steps from the newest checkpoint."""

    def __init__(self, keep: int | None):
        self.keep = keep

    def on_step_end(self, args, state, control, **kwargs):
        if state.max_steps and state.global_step >= state.max_steps:
            control.should_save = False
        return control

    def on_save(self, args, state, control, **kwargs):
        from atlas.training.checkpoints import mark_complete, prune

        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if folder.is_dir():
            mark_complete(folder, state.global_step)
            prune(Path(args.output_dir), self.keep)


class LogProgress(TrainerCallback):
    """`grpo: 12/50 (24%) 8.1 s/step, ETA 5m08s` in the logs (`atlas.core.progress`: at most every
    `ATLAS_PROGRESS_SECONDS`, and a final line), so a training stage run by DVC or Prefect, where no terminal shows
    transformers' bar, says how far it is. Steps done before a resume count toward done, not toward the rate."""

    def __init__(self, label: str, clock: Callable[[], float] | None = None):
        self.label, self.clock, self.progress = label, clock, None

    def on_train_begin(self, args, state, control, **kwargs):
        from atlas.core.progress import Progress

        if state.is_world_process_zero:
            clock = {"clock": self.clock} if self.clock else {}
            self.progress = Progress(self.label, state.max_steps, unit="step", initial=state.global_step, **clock)

    def on_step_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.update(state.global_step - self.progress.done)

    def on_train_end(self, args, state, control, **kwargs):
        if self.progress is not None:
            self.progress.close()
            self.progress = None
