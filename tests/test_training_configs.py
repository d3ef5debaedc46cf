"""TRL's and PEFT's own config classes, built from the pipeline's sections: the same arguments the stages always
passed, any other TRL field through `trl_args` (checked against the pinned TRL), and one-line errors that say what to
fix."""

from __future__ import annotations

import pytest

from atlas.cli import main
from atlas.config import load_config
from atlas.core.errors import ConfigError
from atlas.training.configs import grpo_config, lora_config, sft_config


def test_sft_config_carries_the_section_and_the_pipeline_settings(project, tmp_path):
    cfg = load_config()
    args = sft_config(cfg, tmp_path / "sft_work", "cpu")
    expected = {
        "output_dir": str(tmp_path / "sft_work"),
        "max_steps": cfg.sft.max_steps,
        "learning_rate": cfg.sft.learning_rate,
        "per_device_train_batch_size": cfg.sft.per_device_train_batch_size,
        "gradient_accumulation_steps": cfg.sft.gradient_accumulation_steps,
        "max_length": cfg.sft.max_length,
        "bf16": False,
        "gradient_checkpointing": False,
        "use_cpu": True,
        "warmup_steps": 0,
        "logging_steps": 1,
        "report_to": [],
        "seed": cfg.sft.seed,
        "data_seed": cfg.sft.seed,
        "dataloader_num_workers": 0,
        "disable_tqdm": False,
    }
    assert {k: getattr(args, k) for k in expected} == expected
    assert str(args.lr_scheduler_type.value) == "cosine" and str(args.save_strategy.value) == "steps"
    # resumable checkpoints; the project rotates them itself (KeepCheckpoints), TRL's rotation stays off
    assert args.save_steps == cfg.sft.save_steps and args.save_total_limit is None


def test_grpo_config_takes_the_completion_length_and_reward_weights(project, tmp_path):
    cfg = load_config()
    args = grpo_config(cfg, tmp_path / "grpo", "cpu", [1.0, 0.5])
    g = cfg.grpo
    assert (args.max_steps, args.learning_rate, args.num_generations, args.beta) == (
        g.max_steps,
        g.learning_rate,
        g.num_generations,
        g.beta,
    )
    assert (args.loss_type, args.temperature, args.save_steps, args.use_vllm) == (
        g.loss_type,
        g.temperature,
        g.save_steps,
        False,
    )
    assert args.max_completion_length == cfg.protocol.teacher_max_tokens and args.reward_weights == [1.0, 0.5]
    assert str(args.lr_scheduler_type.value) == "constant" and args.use_cpu


def test_trl_arguments_the_schema_does_not_mirror_pass_through(project, tmp_path):
    cfg = load_config(overrides=["sft.trl_args={warmup_steps: 2, weight_decay: 0.01, lr_scheduler_type: linear}"])
    args = sft_config(cfg, tmp_path, "cpu")
    assert (args.warmup_steps, args.weight_decay, str(args.lr_scheduler_type.value)) == (2, 0.01, "linear")
    grpo = grpo_config(load_config(overrides=["grpo.trl_args.max_grad_norm=0.5"]), tmp_path, "cpu", [1.0])
    assert grpo.max_grad_norm == 0.5


@pytest.mark.parametrize(
    ("override", "build", "message"),
    [
        # a typo: named, with the close TRL field names
        ("sft.trl_args.warmup_step=1", "sft", r"^sft\.trl_args\.warmup_step: not an argument of trl\.SFTConfig "
         r"\(trl 1\.16\.0\) \(did you mean warmup_steps"),
        ("grpo.trl_args.num_iteration=2", "grpo", r"grpo\.trl_args\.num_iteration: .*did you mean num_iterations"),
        # what the pipeline decides itself
        ("grpo.trl_args.output_dir=/tmp/x", "grpo", r"grpo\.trl_args\.output_dir: set by the pipeline"),
        ("grpo.trl_args.max_completion_length=9", "grpo", r"follows protocol\.teacher_max_tokens"),
        # a value TRL itself refuses
        ("sft.trl_args.lr_scheduler_type=bogus", "sft", r"^sft: trl\.SFTConfig \(trl 1\.16\.0\) rejected the "
         "arguments"),
    ],
)  # fmt: skip
def test_bad_trl_arguments_fail_in_one_line(project, tmp_path, override, build, message):
    cfg = load_config(overrides=[override])
    with pytest.raises(ConfigError, match=message) as info:
        sft_config(cfg, tmp_path, "cpu") if build == "sft" else grpo_config(cfg, tmp_path, "cpu", [1.0])
    assert "\n" not in str(info.value)


def test_a_mirrored_field_in_trl_args_fails_at_load(project):
    with pytest.raises(ConfigError, match=r"'sft\.trl_args': 'max_steps' is a key of this section"):
        load_config(overrides=["sft.trl_args.max_steps=3"])


def test_lora_is_peft_s_own_config(project):
    assert lora_config(load_config().sft.lora) is None
    cfg = load_config(overrides=["sft.lora.enabled=true", "sft.lora.lora_alpha=32", "sft.lora.peft_args.bias=all"])
    lora = lora_config(cfg.sft.lora)
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.bias) == (8, 32, 0.0, "all")
    assert set(lora.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj"} and lora.task_type == "CAUSAL_LM"
    with pytest.raises(ConfigError, match=r"sft\.lora\.peft_args\.rank: not an argument of peft\.LoraConfig"):
        lora_config(load_config(overrides=["sft.lora.enabled=true", "sft.lora.peft_args.rank=4"]).sft.lora)


def test_the_stage_stops_before_loading_a_model(project, capsys):
    assert main(["sft", "--set", "sft.trl_args.warmup_step=1"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: sft.trl_args.warmup_step:") and "warmup_steps" in errors[0]
    assert "Traceback" not in err and not (project / "data/checkpoints/sft").exists()
