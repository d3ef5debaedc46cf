"""TRL's and PEFT's own config classes, built from the pipeline's `sft` and `grpo` sections (as open-r1 uses
`trl.SFTConfig` / `trl.GRPOConfig`, nothing is re-declared here).

A section's trainer fields carry TRL's own names and go to the TRL class unchanged; `trl_args` (and `sft.lora.
peft_args`) pass any other field of the pinned class through, checked here against that class's dataclass fields: an
unknown key fails with one line naming it and the closest field names. The few arguments the pipeline decides itself
(where checkpoints go, where metrics go, the device, the completion length and reward weights) cannot be overridden.
Every other default below is only a default: `trl_args` may change it (a scheduler, warmup, weight decay, ...).
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from atlas.config import AtlasConfig, LoraSettings
from atlas.core.errors import ConfigError

SFT_DEFAULTS: dict[str, Any] = dict(
    lr_scheduler_type="cosine",
    warmup_steps=0,
    logging_steps=1,
    save_strategy="steps",
    dataloader_num_workers=0,
    disable_tqdm=False,
)
GRPO_DEFAULTS: dict[str, Any] = dict(
    lr_scheduler_type="constant", save_strategy="steps", logging_steps=1, dataloader_num_workers=0
)
# Set by the pipeline, with the reason a `trl_args` entry cannot change them.
PIPELINE_ARGS = {
    "output_dir": "the stage's work folder",
    "report_to": "metrics go to the stage's MLflow run through the project's callback",
    "use_cpu": "follows models.device",
    "data_seed": "follows the section's seed",
    "max_completion_length": "follows protocol.teacher_max_tokens",
    "reward_weights": "follows reward.*_weight",
    "task_type": "a causal LM",
    "save_total_limit": "set sft.save_total_limit / grpo.save_total_limit: the project rotates checkpoints itself",
}


def check_extra_args(cls: type, args: dict[str, Any], where: str) -> None:
    """Every key of `args` is a field of the dataclass `cls` that the pipeline does not set itself."""
    names = sorted(f.name for f in dataclasses.fields(cls))
    for key in args:
        if key in PIPELINE_ARGS:
            raise ConfigError(f"{where}.{key}: set by the pipeline ({PIPELINE_ARGS[key]}), not by {where}")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"{where}.{key}: not an argument of {_qualname(cls)}{hint}")


def _qualname(cls: type) -> str:
    import importlib

    package = cls.__module__.split(".")[0]
    version = getattr(importlib.import_module(package), "__version__", "?")
    return f"{package}.{cls.__name__} ({package} {version})"


def _build(cls: type, kwargs: dict[str, Any], where: str) -> Any:
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        detail = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}: {_qualname(cls)} rejected the arguments: {detail}") from None


def trainer_fields(section: Any) -> dict[str, Any]:
    """The section's fields that are TRL config fields (everything but its PROJECT_FIELDS), by TRL's names."""
    return section.model_dump(exclude=set(section.PROJECT_FIELDS))


def check_stage_args(cfg: AtlasConfig, stage: str) -> None:
    """Fail before any model loads when the stage's `trl_args` (or `sft.lora.peft_args`) name something the pinned
    TRL / PEFT class does not have."""
    if stage == "sft":
        from peft import LoraConfig
        from trl import SFTConfig

        check_extra_args(SFTConfig, cfg.sft.trl_args, "sft.trl_args")
        check_extra_args(LoraConfig, cfg.sft.lora.peft_args, "sft.lora.peft_args")
    else:
        from trl import GRPOConfig

        check_extra_args(GRPOConfig, cfg.grpo.trl_args, "grpo.trl_args")


def sft_config(cfg: AtlasConfig, output_dir: Path, device: str) -> Any:
    """`trl.SFTConfig` of the `sft` section."""
    from trl import SFTConfig

    s = cfg.sft
    check_extra_args(SFTConfig, s.trl_args, "sft.trl_args")
    fixed = dict(output_dir=str(output_dir), report_to="none", use_cpu=device == "cpu", data_seed=s.seed)
    return _build(SFTConfig, {**SFT_DEFAULTS, **trainer_fields(s), **s.trl_args, **fixed}, "sft")


def grpo_config(cfg: AtlasConfig, output_dir: Path, device: str, reward_weights: list[float]) -> Any:
    """`trl.GRPOConfig` of the `grpo` section, with the teacher's completion length and the reward weights."""
    from trl import GRPOConfig

    g = cfg.grpo
    check_extra_args(GRPOConfig, g.trl_args, "grpo.trl_args")
    fixed = dict(
        output_dir=str(output_dir),
        report_to="none",
        use_cpu=device == "cpu",
        data_seed=g.seed,
        max_completion_length=cfg.protocol.teacher_max_tokens,
        reward_weights=reward_weights,
    )
    return _build(GRPOConfig, {**GRPO_DEFAULTS, **trainer_fields(g), **g.trl_args, **fixed}, "grpo")


def lora_config(lora: LoraSettings) -> Any:
    """`peft.LoraConfig` of `sft.lora`, or None when LoRA is off."""
    if not lora.enabled:
        return None
    from peft import LoraConfig

    check_extra_args(LoraConfig, lora.peft_args, "sft.lora.peft_args")
    fields = lora.model_dump(exclude={*lora.PROJECT_FIELDS, "peft_args"})
    return _build(LoraConfig, {**fields, **lora.peft_args, "task_type": "CAUSAL_LM"}, "sft.lora")
