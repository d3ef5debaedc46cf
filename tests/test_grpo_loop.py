"""GRPO at the tiny preset, looked at closely: the prompts it trains on, how often it asks the student, and resuming
a run that died mid-way. Runs in a copy of the session's tiny project (probes and SFT checkpoint already made)."""

from __future__ import annotations

import shutil

import pytest
from transformers import TrainerCallback

from atlas.config import load_config
from atlas.core import paths
from atlas.teaching.protocol import PROBE_INSTRUCTION


@pytest.fixture
def grpo_project(tiny, tmp_path, monkeypatch):
    root, _ = tiny
    copy = tmp_path / "project"
    shutil.copytree(root, copy, ignore=shutil.ignore_patterns("mlruns.db", "mlartifacts", "work"))
    monkeypatch.chdir(copy)
    return copy


class CountingStudent:
    """Wraps the real student generator and records what it is asked."""

    def __init__(self, inner):
        self.inner, self.prompts, self.generate_calls = inner, [], 0

    @property
    def calls(self):
        return self.inner.calls

    def render(self, prompt):
        return self.inner.render(prompt)

    def logprob(self, prompts, targets, desc=None):
        return self.inner.logprob(prompts, targets, desc=desc)

    def generate(self, prompts, **kwargs):
        self.generate_calls += 1
        self.prompts.extend(self.inner.render(p) for p in prompts)
        return self.inner.generate(prompts, **kwargs)


class Crash(TrainerCallback):
    """Kill the run (as a crash would) right after the given step, once its checkpoint is on disk."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt(f"simulated kill after step {self.step}")


def _student(cfg):
    from atlas.llm.student import load_student

    return CountingStudent(load_student(cfg))


def test_grpo_prompts_are_the_evaluation_teacher_prompts(grpo_project, monkeypatch):
    from atlas.llm.generation import Generation, HFGenerator
    from atlas.llm.models import load_tokenizer
    from atlas.stages.evaluate import teacher_guidance
    from atlas.stages.grpo import grpo_rows
    from atlas.stages.probe import load_probes

    probes = load_probes("train")
    trained_on = [r["prompt"] for r in grpo_rows(probes, load_tokenizer(paths.SFT_CHECKPOINT))]
    seen = []

    def record(self, prompts, **kwargs):
        seen.extend(prompts)
        return [[Generation("<teaching>x</teaching>", 3, False)] for _ in prompts]

    monkeypatch.setattr(HFGenerator, "generate", record)
    teacher_guidance(load_config(), paths.GRPO_CHECKPOINT, list(probes.values()))
    assert seen and [p.encode() for p in seen] == [p.encode() for p in trained_on]


def test_one_student_answer_per_completion_and_nothing_else(grpo_project):
    from atlas.stages.grpo import run as run_grpo

    cfg = load_config(overrides=["grpo.max_steps=2"])
    student = _student(cfg)
    metrics = run_grpo(cfg, student=student)
    per_step = cfg.grpo.per_device_train_batch_size * cfg.grpo.gradient_accumulation_steps
    assert metrics["steps"] == 2
    assert student.generate_calls == 2  # one batched call per step: probes and baselines come from the cache
    assert 2 <= len(student.prompts) <= 2 * per_step  # one per distinct (problem, completion)
    assert len(student.prompts) == student.calls
    assert not any(PROBE_INSTRUCTION in p for p in student.prompts)


def test_killed_run_resumes_from_its_last_checkpoint(grpo_project):
    from atlas.stages.grpo import run as run_grpo

    cfg = load_config(overrides=["grpo.max_steps=4", "grpo.save_steps=2"])
    with pytest.raises(KeyboardInterrupt):
        run_grpo(cfg, callbacks=[Crash(step=3)])
    assert (paths.GRPO_WORK / "checkpoint-2").exists()
    assert not paths.GRPO_CHECKPOINT.exists() or not any(paths.GRPO_CHECKPOINT.glob("*.tmp"))
    metrics = run_grpo(cfg)
    assert metrics["resumed_from"] == "checkpoint-2"
    assert metrics["steps"] == 4
    assert not paths.GRPO_WORK.exists()  # cleaned after a finished run


def test_checkpoints_of_another_configuration_are_not_resumed(grpo_project):
    from atlas.stages.grpo import run as run_grpo

    cfg = load_config(overrides=["grpo.max_steps=3", "grpo.save_steps=2"])
    with pytest.raises(KeyboardInterrupt):
        run_grpo(cfg, callbacks=[Crash(step=3)])
    changed = load_config(overrides=["grpo.max_steps=3", "grpo.save_steps=2", "grpo.learning_rate=0.002"])
    metrics = run_grpo(changed)
    assert metrics["resumed_from"] is None and metrics["steps"] == 3
