"""Issue 14 item 6: progress of long work in the logs, not only on a terminal (tqdm is off when DVC or Prefect pipe a
stage's output). `atlas.core.progress` on a fake clock, the generators and the trainer callback that use it, and the
progress lines of a real tiny stage arriving through the pipeline driver's `log_line` (what the flow sends to Prefect).
The modules under test are imported inside the tests, so each test fails on its own on code without them."""

from __future__ import annotations

import logging
import re
import shutil

import pytest


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "atlas.progress"]


def test_progress_logs_at_most_every_interval_then_a_final_line(caplog):
    from atlas.core.progress import Progress

    clock = Clock()
    caplog.set_level(logging.INFO, logger="atlas.progress")
    with Progress("probe", 608, unit="sequence", interval=30, clock=clock) as progress:
        for _ in range(38):  # a batch of 16 every 2 s
            clock.now += 2
            progress.update(16)
    assert _lines(caplog) == [
        "probe: 240/608 (39%) 8.0 sequences/s, ETA 46s",
        "probe: 480/608 (79%) 8.0 sequences/s, ETA 16s",
        "probe: 608/608 (100%) in 1m16s, 8.0 sequences/s",
    ]


@pytest.mark.parametrize(
    ("total", "initial", "steps", "seconds", "expected"),
    [
        # slow work reads as seconds per unit; a resumed run's earlier steps count toward done, not toward the rate
        (50, 10, 2, 20, "grpo: 12/50 (24%) 10.0 s/step, ETA 6m20s"),
        (50, 0, 1, 120, "grpo: 1/50 (2%) 120.0 s/step, ETA 1h38m"),
        (50, 0, 0, 5, "grpo: 0/50 (0%) no step done yet, ETA unknown"),
    ],
)  # fmt: skip
def test_progress_line_rate_and_eta(caplog, total, initial, steps, seconds, expected):
    from atlas.core.progress import Progress

    clock = Clock()
    caplog.set_level(logging.INFO, logger="atlas.progress")
    progress = Progress("grpo", total, unit="step", initial=initial, interval=0, clock=clock)
    clock.now = seconds
    progress.update(steps)
    assert _lines(caplog) == [expected]


def test_short_or_empty_loops_stay_quiet_and_a_failure_says_where_it_stopped(caplog):
    from atlas.core.progress import Progress

    clock = Clock()
    caplog.set_level(logging.INFO, logger="atlas.progress")
    with Progress("short", 10, interval=30, clock=clock) as progress:
        clock.now = 29
        progress.update(10)
    with Progress("empty", 0, interval=0, clock=clock):
        pass
    assert _lines(caplog) == []
    with pytest.raises(KeyboardInterrupt), Progress("long", 10, interval=30, clock=clock) as progress:
        progress.update(3)
        clock.now += 4
        raise KeyboardInterrupt
    assert _lines(caplog) == ["long: 3/10 (30%) in 4s, 1.3 s/item, stopped"]


@pytest.mark.parametrize(("value", "expected"), [(None, 30.0), ("", 30.0), ("5", 5.0), ("0", 0.0), (" 2.5 ", 2.5)])
def test_the_interval_comes_from_the_environment(monkeypatch, value, expected):
    from atlas.core.progress import ENV, interval_seconds

    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    assert interval_seconds() == expected


@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_interval_fails_in_one_line(monkeypatch, value):
    from atlas.core.errors import ConfigError
    from atlas.core.progress import ENV, Progress

    monkeypatch.setenv(ENV, value)
    with pytest.raises(ConfigError, match=f"ATLAS_PROGRESS_SECONDS='{value}': give the seconds"):
        Progress("probe", 1)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (59.4, "59s"), (60, "1m00s"), (260, "4m20s"), (3900, "1h05m")]
)
def test_durations(seconds, text):
    from atlas.core.progress import duration

    assert duration(seconds) == text


def test_local_generation_and_scoring_log_their_progress(tmp_path, monkeypatch, caplog):
    """Where the probe, evaluation and SFT-target loops spend their time: `HFGenerator` batches."""
    from atlas.config import ModelSpec
    from atlas.llm.generation import HFGenerator
    from atlas.llm.models import materialize

    monkeypatch.setenv("ATLAS_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="atlas.progress")
    spec = ModelSpec(source="tiny", seed=3)
    generator = HFGenerator.from_path(materialize(spec, tmp_path / "tiny"), spec, batch_size=2)
    generator.generate(["a", "b", "c"], max_new_tokens=2, temperature=0.0, num_samples=2, desc="student: probes")
    generator.logprob(["a", "b", "c"], ["1", "2", "3"], desc="student: log p(gold)")
    lines = _lines(caplog)
    assert [line.split(" (")[0] for line in lines] == [
        "student: probes: 2/6",
        "student: probes: 4/6",
        "student: probes: 6/6",
        "student: log p(gold): 2/3",
        "student: log p(gold): 3/3",
    ]
    assert re.fullmatch(r"student: probes: 6/6 \(100%\) in \d+s, [\d.]+ (sequences/s|s/sequence)", lines[2])
    assert "ETA" in lines[0]


def test_the_trainer_callback_logs_steps_and_eta(monkeypatch, caplog):
    """SFT and GRPO: step / max_steps through a transformers `TrainerCallback`, from a resumed step too."""
    from transformers import TrainerState

    from atlas.training.callbacks import LogProgress

    monkeypatch.setenv("ATLAS_PROGRESS_SECONDS", "10")
    caplog.set_level(logging.INFO, logger="atlas.progress")
    clock = Clock()
    callback = LogProgress("grpo steps", clock=clock)
    state = TrainerState(max_steps=8, global_step=2)  # resumed from checkpoint-2
    callback.on_train_begin(None, state, None)
    for step in range(3, 9):
        clock.now += 6
        state.global_step = step
        callback.on_step_end(None, state, None)
    callback.on_train_end(None, state, None)
    assert _lines(caplog) == [
        "grpo steps: 4/8 (50%) 6.0 s/step, ETA 24s",
        "grpo steps: 6/8 (75%) 6.0 s/step, ETA 12s",
        "grpo steps: 8/8 (100%) in 36s, 6.0 s/step",
    ]


def test_a_stage_run_by_dvc_streams_its_progress_lines_to_log_line(in_tiny, tmp_path, monkeypatch):
    """Item 6.2: the driver hands each line of `dvc repro` to `log_line` as it comes (the flow sends them to the
    Prefect task's logger); the stage's own logging, its progress lines included, must be among them. The stage's
    output stays byte-identical: progress is logging only."""
    from atlas.ops import pipeline

    root, _ = in_tiny
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("mlruns.db", "mlartifacts", "__pycache__"))
    monkeypatch.chdir(copy)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlruns.db'}")
    monkeypatch.setenv("ATLAS_ARTIFACT_ROOT", str(tmp_path / "mlartifacts"))
    monkeypatch.setenv("ATLAS_PROGRESS_SECONDS", "0")
    lines: list[str] = []
    assert pipeline.repro_stage("probe", "", lines.append) == pipeline.RAN
    n = len((root / "data/probe/probes.jsonl").read_text().splitlines())  # problems; the tiny preset's k is 2
    progress = [line for line in lines if " INFO atlas.progress: " in line]
    baseline = [line.split("atlas.progress: ")[1] for line in progress if "student: baseline x2: " in line]
    assert baseline and baseline[-1].startswith(f"student: baseline x2: {2 * n}/{2 * n} (100%) in "), lines
    assert any(f"student: log p(gold): {n}/{n} (100%)" in line for line in progress), lines
    assert lines.index(progress[0]) < len(lines) - 1  # among the stage's lines, not after them
    assert not [line for line in lines if "\r" in line or "it/s]" in line], lines  # no tqdm bar in the logs
    assert (copy / "data/probe/probes.jsonl").read_bytes() == (root / "data/probe/probes.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("http://127.0.0.1:5000", "MLflow run: [abc](http://127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning)"),
        ("https://user:secret@mlflow.example:8443/", "MLflow run: [abc](https://mlflow.example:8443/#/experiments/7/runs/abc?workflowType=machine_learning)"),
        ("sqlite:////srv/p/mlruns.db", "MLflow run `abc` in `sqlite:////srv/p/mlruns.db`: serve the store with "
         "`mlflow ui --backend-store-uri sqlite:////srv/p/mlruns.db --host 127.0.0.1 --port 5000` (the project's own "
         "store: `make ui`), then open http://127.0.0.1:5000/#/experiments/7/runs/abc?workflowType=machine_learning"),
    ],
)  # fmt: skip
def test_the_results_artifact_links_the_mlflow_run(uri, expected):
    """Item 6.3: the flow's artifact says where its MLflow run is: a link on a server (never its credentials), else
    the run id and how to open the store."""
    from atlas.ops.results import run_link

    assert run_link(uri, "7", "abc") == expected


def test_rim_batch_scoring_logs_its_progress(tmp_path, monkeypatch, caplog):
    """The evaluation's RIM judgments (minutes with a remote judge) report too: one piece of work per judge call."""
    from tests.rim_helpers import GOOD_ROW, make_reward

    monkeypatch.setenv("ATLAS_PROGRESS_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="atlas.progress")
    reward = make_reward(tmp_path)
    judges = len(reward.config.enabled_judges())
    reward.score_batch_sync([GOOD_ROW] * 3)
    lines = _lines(caplog)
    head = f"RIM: 3 rows x {judges} judges: "
    assert [line.split(" (")[0] for line in lines] == [f"{head}{n}/{3 * judges}" for n in range(1, 3 * judges + 1)]
    assert lines[-1].startswith(f"{head}{3 * judges}/{3 * judges} (100%) in ")
