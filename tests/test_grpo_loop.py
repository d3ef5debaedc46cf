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


def _hash_reward(prompts, completions, **kwargs):
    """Reward with variance inside every group of distinct completions (flat prompts score 0)."""
    import zlib

    pairs = zip(prompts, completions, strict=True)
    return [0.0 if "FLAT" in p else float(zlib.crc32(c.encode()) % 1009) for p, c in pairs]


def _dynamic_trainer(rounds: int, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig

    from atlas.training.dynamic import DynamicGRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(paths.SFT_CHECKPOINT)
    model = AutoModelForCausalLM.from_pretrained(paths.SFT_CHECKPOINT)
    flat = [{"prompt": f"FLAT question {i}:"} for i in range(4)]
    live = [{"prompt": f"question {i}:"} for i in range(4)]
    args = GRPOConfig(
        output_dir=str(tmp_path / f"out{rounds}"), report_to="none", use_cpu=True, max_steps=2, beta=0.0,
        per_device_train_batch_size=4, num_generations=2, max_completion_length=6, learning_rate=1e-2,
        logging_steps=1, save_strategy="no", temperature=1.0, seed=0,
    )  # fmt: skip
    trainer = DynamicGRPOTrainer(
        model=model, reward_funcs=[_hash_reward], args=args, train_dataset=Dataset.from_list(flat),
        processing_class=tokenizer, rows=live, rounds=rounds,
    )  # fmt: skip
    return trainer, model


@pytest.mark.parametrize("rounds", [0, 3])
def test_dynamic_sampling_replaces_groups_without_variance(grpo_project, tmp_path, rounds):
    """Every training prompt gives equal rewards: without resampling nothing is learned (all advantages 0); with one
    up to three rounds, fresh prompts with variance replace every such group and the weights move."""
    from atlas.training.checkpoints import snapshot, weight_change

    trainer, model = _dynamic_trainer(rounds, tmp_path)
    before = snapshot(model)
    trainer.train()
    logged = [h for h in trainer.state.log_history if "effective_groups" in h]
    assert [h["effective_groups"] for h in logged] == [2.0, 2.0]
    # TRL's own count covers every group generated (the fresh ones too), before any filtering
    assert all(h["frac_reward_zero_std"] >= 0.5 for h in logged)
    totals = trainer.dynamic_totals
    assert totals["groups"] == 4
    if rounds == 0:
        assert [h["effective_frac_zero_std"] for h in logged] == [1.0, 1.0]
        assert totals["zero_std_groups"] == 4 and totals["generated_groups"] == 4
        assert weight_change(before, trainer.model) == 0.0
    else:
        assert [h["effective_frac_zero_std"] for h in logged] == [0.0, 0.0]
        assert totals["zero_std_groups"] == 0 and totals["generated_groups"] >= 8
        assert weight_change(before, trainer.model) > 0.0


def test_merge_batches_pads_prompts_left_and_completions_right():
    import torch

    from atlas.training.dynamic import merge_batches, zero_variance_groups

    t = torch.tensor
    a = {"prompt_ids": t([[5, 6]]), "completion_ids": t([[7]]), "advantages": t([1.0])}
    b = {"prompt_ids": t([[1, 2, 3]]), "completion_ids": t([[8, 9]]), "advantages": torch.zeros(1)}
    merged = merge_batches([a, b], pad_id=0)
    assert merged["prompt_ids"].tolist() == [[0, 5, 6], [1, 2, 3]]
    assert merged["completion_ids"].tolist() == [[7, 0], [8, 9]]
    assert zero_variance_groups(torch.tensor([0.0, 0.0, 1.0, -1.0]), 2) == [0]
