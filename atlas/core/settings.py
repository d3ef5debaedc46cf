"""What every configuration schema here is built from: strict pydantic sections, YAML reading, deep merging, dotted
`key.path=value` overrides, up-front key checking (so an unknown key lists the valid ones) and one-line validation
errors that name the key, the file and the value. The pipeline schema (`atlas.config`) and the RIM schema
(`atlas.rim.config`) both use these; nothing here knows either schema.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from atlas.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
Overrides = Mapping[str, Any] | Sequence[str] | None


class StrictModel(BaseModel):
    """A config section: unknown keys are errors, and assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key repeated in one mapping is an error (PyYAML keeps the last value)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, int] = {}
        for key_node, _ in node.value:
            key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
            if not isinstance(key, str | int | float | bool):
                continue  # an unusual key (a list, a merge): PyYAML's own rules apply
            if key in first:
                where = f"{self.name}: line {line}"
                raise ConfigError(f"{where}: duplicate key '{key}' (first at line {first[key]}): keep one of them")
            first[key] = line
        return super().construct_mapping(node, deep=deep)


def load_yaml_text(text: str, origin: str) -> Any:
    """Parse YAML (safe types only), refusing duplicate keys; errors are `ConfigError`s naming `origin`."""
    loader = _UniqueKeyLoader(text)
    loader.name = origin
    try:
        return loader.get_single_data()
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not valid YAML ({' '.join(str(exc).split())})") from None
    finally:
        loader.dispose()


def read_yaml(path: Path | str) -> dict[str, Any]:
    """A YAML file whose top level is a mapping (no key twice in one mapping); anything else is a `ConfigError`
    naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read ({exc})") from None
    data = load_yaml_text(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`base` with `extra` merged in, section by section (copies; neither input changes)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def check_keys(
    data: dict[str, Any], model: type[BaseModel], prefix: str, origin: str, label: str = "config key"
) -> None:
    """Reject unknown keys up front so the message can list the valid ones."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if key not in model.model_fields:
            valid = ", ".join(sorted(model.model_fields))
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


def override_items(overrides: Overrides, drop_prefix: str | None = None) -> list[tuple[str, list[str], Any]]:
    """(label, key parts, value) per override, from `key.path=value` strings or a `{dotted key: value}` mapping;
    a leading `drop_prefix.` (e.g. `rim.`) is accepted and removed."""
    if not overrides:
        return []
    if isinstance(overrides, Mapping):
        items = [(str(k), [p for p in str(k).split(".") if p], v) for k, v in overrides.items()]
    else:
        items = [(item, *parse_override(item)) for item in overrides]
    out = []
    for label, parts, value in items:
        if drop_prefix and parts[:1] == [drop_prefix]:
            parts = parts[1:]
        if not parts:
            raise ConfigError(f"override '{label}' has an empty key (value {value!r})")
        out.append((label, parts, value))
    return out


def apply_overrides(
    data: dict[str, Any], overrides: Overrides, drop_prefix: str | None = None, what: str = "override"
) -> dict[str, Any]:
    """A copy of `data` with each override set at its dotted key (sections are created as needed)."""
    out = copy.deepcopy(data)
    for label, parts, value in override_items(overrides, drop_prefix):
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{what} '{label}': '{part}' is not a section")
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


def build(model: type[M], data: dict[str, Any], origin: str, label: str = "config key") -> M:
    """`model` validated from `data`: unknown keys first (listing the valid ones), then values; any problem is one
    `ConfigError` with a line per problem."""
    check_keys(data, model, "", origin, label)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, origin, label)) from None
