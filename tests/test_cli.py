"""The small things people reach for at the command line: `atlas --version`, `atlas config --show` (the resolved
configuration, nothing written), and a mistyped command that suggests the nearest one."""

from __future__ import annotations

import importlib.metadata

import pytest
import yaml

from atlas.cli import main
from atlas.core import paths


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"atlas {importlib.metadata.version('atlas-pipeline')}"


def test_config_show_prints_the_resolved_configuration_and_writes_nothing(project, capsys):
    (project / "params.yaml").write_text("preset: tiny\ngrpo:\n  max_steps: 7\n")
    assert main(["config", "--show", "--set", "grpo.beta=0.2"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["preset"] == "tiny"
    assert (shown["grpo"]["max_steps"], shown["grpo"]["beta"]) == (7, 0.2)  # params.yaml, then --set
    assert shown["protocol"]["teacher_max_tokens"] == 16  # the preset's value
    assert not (project / paths.CONFIG_DIR).exists()  # --show writes no section files


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["tech", "x"], "did you mean 'teach'?"),  # a top-level command
        (["evalute"], "did you mean 'evaluate'?"),
        (["rim", "scroe"], "did you mean 'score'?"),  # a sub-command of a group
    ],
)
def test_mistyped_command_suggests_the_nearest(argv, suggestion, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert suggestion in capsys.readouterr().err


def test_nothing_close_suggests_nothing(capsys):
    with pytest.raises(SystemExit):
        main(["zzzzzz"])
    assert "did you mean" not in capsys.readouterr().err
