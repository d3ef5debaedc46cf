"""The RIM judge configuration (`configs/rim_config.yaml`): schema, loading and dotted overrides (on the generic
helpers of `atlas.core.settings`, like the pipeline's own configuration).

The file holds one `rim:` mapping (a bare mapping is accepted too). Everything is validated at load: an unknown key,
a value out of range or an unknown judge fails with a message that names the key and lists what is accepted. Which
judges exist depends only on the config itself (the built-in judges plus its `custom_judges`), never on state
elsewhere in the process. No secrets live here: a model section names the *environment variable* that holds its
API key.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from atlas.core.errors import ConfigError
from atlas.core.settings import Overrides, StrictModel, apply_overrides, build, read_yaml
from atlas.llm.transport import RetryPolicy
from atlas.rim.judges import BUILTIN_JUDGES, RESERVED_NAMES, JudgeSpec, spec_from_settings

DEFAULT_CONFIG_PATH = Path("configs/rim_config.yaml")
_PROVIDER_ALIASES = {"google": "gemini", "openai_compat": "openai", "openai-compatible": "openai", "hf": "transformers"}
_Strict = StrictModel


class RetrySettings(_Strict):
    """Transport retries (408, 429, 5xx, timeouts: the policy of `atlas.llm.transport`) and re-asks after an
    invalid or off-schema reply."""

    attempts: int = Field(default=4, ge=1, le=10)
    backoff_seconds: float = Field(default=1.0, ge=0.0)
    max_backoff_seconds: float = Field(default=30.0, ge=0.0)
    max_retry_after_seconds: float = Field(default=120.0, ge=0.0)
    invalid_json_retries: int = Field(default=2, ge=0, le=5)

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.attempts,
            backoff=self.backoff_seconds,
            max_backoff=self.max_backoff_seconds,
            max_retry_after=self.max_retry_after_seconds,
        )


class ModelSettings(_Strict):
    """One judge model: which backend serves it, where, and what it costs."""

    provider: Literal["gemini", "openai", "transformers", "offline"] = "offline"
    model: str = "rules-v1"
    api_key_env: str | None = None
    base_url: str | None = None
    max_output_tokens: int = Field(default=2048, ge=16)
    timeout_seconds: float = Field(default=60.0, gt=0.0)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    input_price_per_million: float = Field(default=0.0, ge=0.0)
    output_price_per_million: float = Field(default=0.0, ge=0.0)
    response_format: Literal["json_object", "json_schema", "none"] = "json_object"
    device: str = "cpu"

    @field_validator("provider", mode="before")
    @classmethod
    def _alias(cls, value: Any) -> Any:
        return _PROVIDER_ALIASES.get(value, value) if isinstance(value, str) else value

    def cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_price_per_million + output_tokens * self.output_price_per_million) / 1e6


class CustomJudgeSettings(_Strict):
    """A judge defined in the config file: its role, task, criteria and the trajectory fields it reads."""

    role: str
    task: str
    criteria: list[str] = Field(default_factory=list)
    fields: list[str] = Field(default_factory=lambda: ["question", "teaching", "taught_response"])


class AggregationSettings(_Strict):
    """How a non-escalated tier-1 result is chosen and how judges combine into one reward."""

    tier1_selection: Literal["most_confident", "mean"] = "most_confident"
    judge_weights: dict[str, float] = Field(default_factory=dict)

    @field_validator("judge_weights")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [name for name, weight in value.items() if weight < 0]
        if bad:
            raise ValueError(f"weights must be >= 0 (negative: {', '.join(bad)})")
        return value


class CacheSettings(_Strict):
    enabled: bool = True
    path: str = ".atlas/rim_cache.sqlite"


class RIMConfig(_Strict):
    temperatures: list[float] = Field(default_factory=lambda: [0.2, 0.5, 0.8], min_length=1)
    variance_threshold: float = Field(default=0.15, ge=0.0)
    uncertainty_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    arbiter_temperature: float = Field(default=0.3, ge=0.0, le=2.0)
    custom_judges: dict[str, CustomJudgeSettings] = Field(default_factory=dict)
    active_judges: dict[str, bool] = Field(
        default_factory=lambda: {"accuracy": True, "helpfulness": True, "process": True, "diagnostic": True}
    )
    small_model: ModelSettings = Field(default_factory=ModelSettings)
    large_model: ModelSettings = Field(default_factory=lambda: ModelSettings(model="rules-v1-arbiter"))
    judge_prompt: str | None = None
    focus_prompt: str | None = None
    aggregation: AggregationSettings = Field(default_factory=AggregationSettings)
    max_concurrency: int = Field(default=8, ge=1, le=256)
    batch_deadline_seconds: float | None = Field(
        default=600.0,
        gt=0.0,
        description="wall-clock limit of one GRPO reward call: rows not scored by then are None (counted as"
        " `deadline_unscored`), so a hanging judge cannot stall training; null = no limit (evaluation and"
        " `rim score` are never cut short)",
    )
    max_field_chars: int = Field(default=6000, ge=200)
    cache: CacheSettings = Field(default_factory=CacheSettings)

    @field_validator("temperatures")
    @classmethod
    def _temperatures_in_range(cls, value: list[float]) -> list[float]:
        bad = [t for t in value if not 0.0 <= t <= 2.0]
        if bad:
            raise ValueError(f"each temperature must be in [0, 2] (got {bad})")
        return value

    @field_validator("custom_judges")
    @classmethod
    def _custom_judges_valid(cls, value: dict[str, CustomJudgeSettings]) -> dict[str, CustomJudgeSettings]:
        shadowing = sorted(set(value) & (set(BUILTIN_JUDGES) | RESERVED_NAMES))
        if shadowing:
            raise ValueError(f"{shadowing} is a built-in judge or a reserved name: pick another name")
        for name, settings in value.items():
            spec_from_settings(name, settings)
        return value

    @field_validator("active_judges")
    @classmethod
    def _judges_known(cls, value: dict[str, bool], info: ValidationInfo) -> dict[str, bool]:
        panel = [name for name, spec in BUILTIN_JUDGES.items() if spec.panel]
        valid = sorted(set(panel) | set(info.data.get("custom_judges") or {}))
        unknown = [name for name in value if name not in valid]
        if unknown:
            raise ValueError(f"unknown judge(s) {unknown} (valid judges: {', '.join(valid)})")
        if not any(value.values()):
            raise ValueError("no judge is enabled: set at least one to true")
        return value

    @model_validator(mode="after")
    def _weights_known(self) -> RIMConfig:
        unknown = [name for name in self.aggregation.judge_weights if name not in self.active_judges]
        if unknown:
            valid = ", ".join(self.active_judges)
            raise ValueError(f"aggregation.judge_weights names judge(s) {unknown} not in active_judges ({valid})")
        return self

    def enabled_judges(self) -> list[str]:
        return [name for name, on in self.active_judges.items() if on]

    def judge_weight(self, name: str) -> float:
        return float(self.aggregation.judge_weights.get(name, 1.0))

    def effective_focus(self) -> str | None:
        """Operator criteria for the session evaluator: `focus_prompt`, falling back to `judge_prompt`."""
        return self.focus_prompt or self.judge_prompt


def build_rim_config(data: dict[str, Any], origin: str = "rim config") -> RIMConfig:
    return build(RIMConfig, data, origin, label="RIM config key")


def _read(path: Path) -> dict[str, Any]:
    data = read_yaml(path)
    if "rim" in data:
        extra = sorted(set(data) - {"rim"})
        if extra:
            raise ConfigError(f"{path}: unexpected top-level key(s) {extra} next to 'rim'")
        data = data["rim"] or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: 'rim' must be a mapping")
    return data


def apply_rim_overrides(data: dict[str, Any], overrides: Overrides) -> dict[str, Any]:
    """Dotted overrides (`small_model.provider`, a leading `rim.` accepted) as a mapping or `key=value` strings."""
    return apply_overrides(data, overrides, drop_prefix="rim", what="RIM override")


def with_judges(data: dict[str, Any], judges: Sequence[JudgeSpec]) -> dict[str, Any]:
    """`data` with judges defined in code added to its `custom_judges` (enable them by name in `active_judges`)."""
    custom = dict(data.get("custom_judges") or {})
    for spec in judges:
        if spec.name in custom:
            raise ConfigError(f"judge '{spec.name}' is defined twice (in code and in custom_judges, or twice in code)")
        custom[spec.name] = spec.settings()
    return {**data, "custom_judges": custom} if judges else data


def load_rim_config(
    path: Path | str | None = None, overrides: Overrides = None, judges: Sequence[JudgeSpec] = ()
) -> RIMConfig:
    """Read and validate a RIM config. `path=None` means `configs/rim_config.yaml` when it exists, else the built-in
    defaults (identical to that file: the offline judge). `overrides` are dotted keys (`small_model.provider`), as a
    dict of key -> value or a list of `key=value` strings; a leading `rim.` is accepted. `judges` are user-defined
    judges written in code: they join `custom_judges`, so the config alone says which judges exist."""
    if path is None:
        data = _read(DEFAULT_CONFIG_PATH) if DEFAULT_CONFIG_PATH.exists() else {}
        origin = str(DEFAULT_CONFIG_PATH) if DEFAULT_CONFIG_PATH.exists() else "built-in RIM defaults"
    else:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"RIM config file not found: {path}")
        data, origin = _read(path), str(path)
    return build_rim_config(apply_rim_overrides(with_judges(data, judges), overrides), origin=origin)
