"""Doctor checks of the Python stack: the interpreter against `requires-python`, the installed packages against the
project's exact pins, and the known-bad versions that pip cannot see."""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

from atlas.ops.doctor import core
from atlas.ops.doctor.core import Check

PROJECT = "atlas-pipeline"
# Runtime breaks that pip cannot see (reference/stack-notes.md): package, first bad version, what breaks.
KNOWN_BAD = {
    "fastapi": ((0, 151), "breaks prefect 3.8.8: from 0.151 `prefect deployment ls` answers 422, from 0.155 the "
    "server and every flow run crash (`Body() got an unexpected keyword argument 'min_items'`)"),
    "sqlalchemy": ((2, 1), "breaks prefect 3.8.8: its scheduler errors every minute, so cron schedules silently never "
    "create runs"),
}  # fmt: skip
# The source tree's pyproject.toml, beside the installed `atlas` package (this file: atlas/ops/doctor/checks_stack.py).
SOURCE_PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def project_requirements(root: Path) -> tuple[list[str], str | None, str]:
    """(dependency strings, requires-python, where they came from): the project's pyproject.toml (the working
    directory's, else the source tree beside the installed package), else the installed package's metadata."""
    for path in (root / "pyproject.toml", SOURCE_PYPROJECT):
        if path.is_file():
            project = tomllib.loads(path.read_text(encoding="utf-8")).get("project", {})
            if project.get("name") == PROJECT:
                return list(project.get("dependencies", [])), project.get("requires-python"), str(path)
    try:
        meta = importlib.metadata.metadata(PROJECT)
        requires = [r for r in importlib.metadata.requires(PROJECT) or [] if "extra ==" not in r]
        return requires, meta.get("Requires-Python"), f"installed {PROJECT} metadata"
    except importlib.metadata.PackageNotFoundError:
        return [], None, "nowhere (the project is not installed)"


def exact_pins(requirements: list[str]) -> dict[str, str]:
    from packaging.requirements import InvalidRequirement, Requirement

    pins = {}
    for text in requirements:
        try:
            req = Requirement(text)
        except InvalidRequirement:
            continue
        specs = list(req.specifier)
        if len(specs) == 1 and specs[0].operator == "==" and (req.marker is None or req.marker.evaluate()):
            pins[req.name.lower()] = specs[0].version
    return pins


def check_python(root: Path) -> list[Check]:
    from packaging.specifiers import SpecifierSet

    _, requires, _ = project_requirements(root)
    current = ".".join(str(p) for p in sys.version_info[:3])
    if requires and current not in SpecifierSet(requires):
        fix = "python3.11 -m venv .venv && make setup"
        return [Check("python", "fail", f"{current} does not satisfy {requires}", fix)]
    return [Check("python", "ok", f"{current} ({sys.executable})")]


def check_stack(root: Path) -> list[Check]:
    requirements, _, origin = project_requirements(root)
    pins = exact_pins(requirements)
    missing, differ = [], []
    for name, pin in sorted(pins.items()):
        version = core.installed_version(name)
        if version is None:
            missing.append(name)
        elif version.split("+")[0] != pin:
            differ.append(f"{name} {version} (pinned {pin})")
    checks = []
    if missing:
        checks.append(Check("stack", "fail", f"not installed: {', '.join(missing)}", "make setup"))
    elif differ:
        checks.append(Check("stack", "warn", f"differs from the pins in {origin}: {'; '.join(differ)}", "make setup"))
    else:
        checks.append(Check("stack", "ok", f"{len(pins)} pinned packages match {origin}"))
    for name, (first_bad, reason) in KNOWN_BAD.items():
        version = core.installed_version(name)
        if version is None:
            continue
        bound = ".".join(map(str, first_bad))
        if _version_tuple(version) >= first_bad:
            pin = pins.get(name)
            fix = f"pip install '{name}=={pin}'" if pin else f"pip install '{name}<{bound}'"
            checks.append(Check(f"{name} pin", "fail", f"{name} {version} {reason}", f"{fix} (or `make setup`)"))
        else:
            checks.append(Check(f"{name} pin", "ok", f"{name} {version} < {bound}"))
    return checks
