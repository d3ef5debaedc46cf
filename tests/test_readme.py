"""Every command in the README works as written on a fresh clone (issue 13 item 11), checked as cheaply as it can be:
`atlas` command lines parse, `dvc exp run --set-param` overrides apply to the committed params.yaml through DVC's own
code (struct mode: the key must exist), make targets exist, the Prefect deployment takes the parameter; the commands
that need a pipeline (`dvc repro`, `dvc exp run`, `atlas run`, the flow) run for real in tests/test_flow_dvc.py."""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")
# Run for real elsewhere: the tiny pipeline (tests/test_flow_dvc.py), the notebook (tests/test_notebook.py).
RUN_ELSEWHERE = {
    "dvc repro",
    "dvc metrics show",
    "dvc params diff",
    "dvc plots show",
    "source .venv/bin/activate",
    "jupyter execute",
}
# Served and asked for real in tests/test_teacher_model.py (`mlflow models serve` on 127.0.0.1, one request, stopped).
RUN_ELSEWHERE |= {
    "mlflow models serve -m models:/atlas-teacher@champion",
    "curl -s 127.0.0.1:5001/invocations",
    "kill $!",
}


def readme_commands() -> list[str]:
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():  # a line continued with `\` is one command
            line = line.split("#", 1)[0].strip()
            commands += [part.strip() for part in line.split(";") if part.strip()]
    return commands


COMMANDS = readme_commands()


def _argv(command: str) -> list[str]:
    words = [w for w in shlex.split(command) if not re.fullmatch(r"[A-Z_]+=\S*", w)]  # drop `VAR=value` prefixes
    return words


def test_the_readme_has_commands():
    assert len(COMMANDS) > 10 and any(c.startswith("dvc exp run --set-param") for c in COMMANDS)


@pytest.mark.parametrize("command", [c for c in COMMANDS if _argv(c)[0].endswith("atlas")])
def test_atlas_commands_parse(command):
    from atlas.cli.main import build_parser

    build_parser().parse_args(_argv(command)[1:])


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("dvc exp run --set-param")])
def test_dvc_set_param_applies_to_the_committed_params(command, tmp_path):
    """What `dvc exp run --set-param` does to params.yaml first, with DVC's own function (it failed with
    "Key 'grpo' is not in struct" when params.yaml held only `preset`)."""
    from dvc.utils.hydra import apply_overrides

    from atlas.config import load_config

    params = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", params)
    overrides = [w.split("=", 1)[1] if w.startswith("--set-param=") else w for w in _argv(command)[4:]]
    apply_overrides(params, overrides)
    key, value = overrides[0].lstrip("+").split("=", 1)
    data = yaml.safe_load(params.read_text())
    for part in key.split("."):
        data = data[part]
    assert data == yaml.safe_load(value)
    cfg = load_config(params)
    assert str(cfg.model_dump()[key.split(".")[0]][key.split(".")[1]]) == value


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("make ")])
def test_make_targets_exist(command):
    makefile = (REPO / "Makefile").read_text()
    for target in _argv(command)[1:]:
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), target


@pytest.mark.parametrize("command", [c for c in COMMANDS if c.startswith("prefect deployment run")])
def test_prefect_commands_name_the_deployment_and_its_parameters(command):
    from flows.train import atlas_flow

    words = _argv(command)
    flow, deployment = words[3].split("/")
    assert (flow, deployment) == ("atlas", "train") and atlas_flow.name == "atlas"
    for i, word in enumerate(words):
        if word == "--param":
            assert words[i + 1].split("=")[0] in atlas_flow.parameters.properties


def test_every_other_command_is_run_elsewhere():
    handled = ("atlas", ".venv/bin/atlas", "dvc exp run --set-param", "make ", "prefect deployment run")
    rest = [c for c in COMMANDS if not any(_argv(c)[0].endswith(h) or c.startswith(h) for h in handled)]
    assert all(any(known in c for known in RUN_ELSEWHERE) for c in rest), rest


def test_the_committed_params_are_the_resolved_cpu_preset():
    """params.yaml is complete and generated from configs/presets/cpu.yaml: regenerate it with
    `atlas params --preset cpu` after editing the preset."""
    from atlas.config import is_complete, load_config, params_yaml

    text = (REPO / "params.yaml").read_text()
    assert is_complete(yaml.safe_load(text))
    assert text == params_yaml(load_config(None, preset="cpu", presets_dir=REPO / "configs/presets")), (
        "params.yaml differs from the cpu preset: run `atlas params --preset cpu`"
    )


def test_generated_outputs_are_not_in_git():
    """Issue 13 item 3: reports and section files are DVC outputs (a committed reports/eval.json let the gate pass
    on a fresh clone)."""
    import subprocess

    tracked = subprocess.run(
        ["git", "ls-files", "reports", "data"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    assert all(path.endswith((".gitignore", ".gitkeep")) for path in tracked), tracked
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in stages.values():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            assert not (isinstance(out, dict) and next(iter(out.values())).get("cache") is False), out


def test_every_dvc_output_is_ignored_by_the_gitignore_dvc_writes():
    """A fresh clone's `make run` must leave `git status` clean but for dvc.lock: DVC adds each output to the
    .gitignore beside it, and one missing from the committed file (`/rule` in data/checkpoints) showed up as a
    modified file, so the registered version's provenance said the checkout was dirty."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    missing = []
    for stage in stages.values():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            path = Path(out if isinstance(out, str) else next(iter(out)))
            ignore = REPO / path.parent / ".gitignore"
            entries = ignore.read_text().split() if ignore.exists() else []
            if f"/{path.name}" not in entries:
                missing.append(f"{ignore.relative_to(REPO)}: /{path.name}")
    assert not missing, missing
