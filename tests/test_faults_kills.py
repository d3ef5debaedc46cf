"""Kills with real signals at the tiny preset: a training stage killed while it writes a checkpoint resumes from the
last complete one and ends with the weights of the uninterrupted run (GRPO and SFT), a run keeps only its newest
checkpoints, validate killed half-way leaves the old processed set consistent with its card, and a second stage
command on the same work folder stops instead of deleting the first one's checkpoints. Each child process runs
`atlas <stage>` and SIGKILLs itself at an exact point (tests/faults.py)."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import TrainerCallback

from atlas.config import load_config
from atlas.core import paths
from tests.faults import KILLER, child_env, run_killed_at, stop_process


@pytest.fixture
def trained(tiny, tmp_path, monkeypatch):
    """A copy of the session's tiny project (models, data, probes, checkpoints made) as the working directory."""
    root, _ = tiny
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("mlruns.db", "mlartifacts", "work", "locks"))
    monkeypatch.chdir(copy)
    return copy


def _weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


def _assert_identical(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def checkpoint_dirs(work_dir: Path) -> list[Path]:
    return sorted((d for d in Path(work_dir).glob("checkpoint-*") if d.is_dir()), key=lambda d: int(d.name[11:]))


def is_complete(folder: Path) -> bool:
    from atlas.training.checkpoints import COMPLETE

    return (folder / COMPLETE).is_file()


class SeenCheckpoints(TrainerCallback):
    """The checkpoint folders of the work dir after each save."""

    def __init__(self, work_dir: Path):
        self.work_dir, self.seen = work_dir, []

    def on_save(self, args, state, control, **kwargs):
        self.seen.append([d.name for d in checkpoint_dirs(self.work_dir)])


GRPO_SET = ["grpo.max_steps=5", "grpo.save_steps=1"]  # and the default grpo.save_total_limit: 2


def test_grpo_killed_while_saving_resumes_from_the_last_complete_checkpoint_with_identical_weights(trained):
    from atlas.stages.grpo import run as run_grpo

    cfg = load_config(overrides=GRPO_SET)
    run_grpo(cfg)  # the uninterrupted run
    reference = _weights(paths.GRPO_CHECKPOINT)
    shutil.rmtree(paths.GRPO_CHECKPOINT)

    argv = ["grpo", *[a for item in GRPO_SET for a in ("--set", item)]]
    killed = run_killed_at("checkpoint-4/trainer_state.json", argv, trained)  # after its weights, before its state
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    left = [d.name for d in checkpoint_dirs(paths.GRPO_WORK)]
    assert (paths.GRPO_WORK / "checkpoint-4" / "model.safetensors").exists()

    seen = SeenCheckpoints(paths.GRPO_WORK)
    metrics = run_grpo(cfg, callbacks=[seen])
    assert metrics["resumed_from"] == "checkpoint-3" and metrics["steps"] == 5
    _assert_identical(_weights(paths.GRPO_CHECKPOINT), reference)
    assert not paths.GRPO_WORK.exists()
    # the newest 2 complete checkpoints were kept while the runs went on (the unfinished checkpoint-4 on top)
    assert left == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    assert seen.seen == [["checkpoint-3", "checkpoint-4"]]  # none at the last step: the stage saves the model


def test_sft_keeps_checkpoints_and_a_killed_run_resumes_with_identical_weights(trained):
    from atlas.stages.sft import run as run_sft

    overrides = ["sft.max_steps=3", "sft.save_steps=1"]
    cfg = load_config(overrides=overrides)
    run_sft(cfg)
    reference = _weights(paths.SFT_CHECKPOINT)
    shutil.rmtree(paths.SFT_CHECKPOINT)

    killed = run_killed_at("checkpoint-2/trainer_state.json", ["sft", "--set", overrides[0], "--set", overrides[1]],
                           trained)  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert [is_complete(d) for d in checkpoint_dirs(paths.SFT_WORK)] == [True, False]

    metrics = run_sft(cfg)
    assert metrics["resumed_from"] == "checkpoint-1" and metrics["steps"] == 3
    _assert_identical(_weights(paths.SFT_CHECKPOINT), reference)
    assert not paths.SFT_WORK.exists()


def test_an_empty_or_unfinished_checkpoint_is_never_resumed(tmp_path):
    from atlas.training.checkpoints import COMPLETE, last_checkpoint

    work = tmp_path / "work"
    assert last_checkpoint(work, "fp") is None
    for step, complete in ((2, True), (4, True), (6, False)):
        folder = work / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"weights")
        if complete:
            (folder / COMPLETE).write_text("{}")
    (work / "checkpoint-8").mkdir()  # killed right after the trainer made the folder
    assert last_checkpoint(work, "fp") == str(work / "checkpoint-4")
    assert [d.name for d in checkpoint_dirs(work)] == ["checkpoint-2", "checkpoint-4"]


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_text(encoding="utf-8").encode("utf-8")).hexdigest()


def test_validate_killed_half_way_leaves_the_old_set_consistent_with_its_card(project):
    from atlas.config import load_config as load
    from atlas.stages import ingest, validate

    cfg = load()
    ingest.run(cfg)
    validate.run(cfg)
    before = {p: p.read_bytes() for p in (paths.TRAIN, paths.EVAL, paths.SFT_DATA)}

    # another salt splits differently, so every processed file changes; killed while the new eval.jsonl is written
    killed = run_killed_at("eval.jsonl", ["validate", "--set", "data.split_salt=other"], project)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert {p: p.read_bytes() for p in before} == before
    card = json.loads(paths.DATASET_CARD.read_text(encoding="utf-8"))
    for entry in card["files"].values():
        assert _sha(entry["path"]) == entry["sha256"], entry["path"]

    validate.run(load(overrides=["data.split_salt=other"]))  # the next run replaces the whole set
    card = json.loads(paths.DATASET_CARD.read_text(encoding="utf-8"))
    assert card["settings"]["split_salt"] == "other"
    assert all(_sha(e["path"]) == e["sha256"] for e in card["files"].values())
    assert paths.TRAIN.read_bytes() != before[paths.TRAIN]


def test_a_second_stage_command_stops_and_leaves_the_first_ones_checkpoints(trained):
    from atlas.cli.main import main

    first = subprocess.Popen(
        [sys.executable, "-c", KILLER, "no-such-file", "grpo", "--set", "grpo.max_steps=400", "--set",
         "grpo.save_steps=1"],
        cwd=trained, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    saved = paths.GRPO_WORK / "checkpoint-1" / "trainer_state.json"
    try:
        deadline = time.monotonic() + 240
        while not saved.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()[-2000:]
            time.sleep(0.2)
        fingerprint = (paths.GRPO_WORK / "fingerprint.json").read_text()

        # another configuration: without the lock, it would discard the first run's checkpoints as "other inputs"
        code = main(["grpo", "--set", "grpo.learning_rate=0.002", "--set", "grpo.max_steps=1"])
        assert code == 2
        assert first.poll() is None
        assert (paths.GRPO_WORK / "fingerprint.json").read_text() == fingerprint
        assert any((d / "trainer_state.json").exists() for d in checkpoint_dirs(paths.GRPO_WORK))
    finally:
        stop_process(first)
    # the kernel released the dead process's lock: the stage runs again (and resumes nothing of another config)
    assert main(["grpo", "--set", "grpo.learning_rate=0.002", "--set", "grpo.max_steps=1"]) == 0


def test_the_lock_message_is_one_line_naming_the_holder(trained, capsys):
    from atlas.core import locks
    from atlas.ops.runner import run_stage

    with locks.hold(paths.LOCKS_DIR / "grpo.lock", "`atlas grpo`"), pytest.raises(locks.Busy) as caught:
        run_stage(load_config(), "grpo")
    message = str(caught.value)
    assert len(message.splitlines()) == 1 and "already running" in message and "pid " in message


class SeedRecorder:
    """A student that records the sampling seed of each generate call (and always answers 7)."""

    def __init__(self):
        self.seeds, self.calls = [], 0

    def render(self, messages):
        return str(messages)

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, prompts, seed=None, num_samples=1, **_):
        from atlas.llm.generation import Generation

        self.seeds.append(seed)
        return [[Generation("\\boxed{7}", 3, False)] * num_samples for _ in prompts]

    def logprob(self, prompts, targets, desc=None):
        return [0.0 for _ in prompts]


def test_the_students_sampling_seed_follows_the_trainer_step_not_the_process():
    """The cause of resumed != uninterrupted: a rollout started at step 3 (a resumed run) must sample step 3 with the
    seed the uninterrupted run used there."""
    from types import SimpleNamespace

    from atlas.config import build_config
    from atlas.teaching.records import BaselineSample, ProbeRecord
    from atlas.training.rollout import TeachingRollout

    sample = BaselineSample("\\boxed{5}", 3, False, False, True)
    probes = {"p": ProbeRecord("p", "train", "add", "2 + 5?", "7", "I add.", (sample,), 0.0, -3.0)}
    cfg = build_config({})
    uninterrupted, resumed = SeedRecorder(), SeedRecorder()
    first = TeachingRollout(cfg, uninterrupted, probes, len)
    for step in range(5):
        first.outcomes([f"<teaching>hint {step}</teaching>"], ["p"], SimpleNamespace(global_step=step))
    later = TeachingRollout(cfg, resumed, probes, len)
    for step in range(3, 5):
        later.outcomes([f"<teaching>hint {step}</teaching>"], ["p"], SimpleNamespace(global_step=step))
    assert resumed.seeds == uninterrupted.seeds[3:]
    assert len(set(uninterrupted.seeds)) == 5
