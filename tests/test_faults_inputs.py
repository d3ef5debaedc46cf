"""Inputs that must be refused: a --params file that does not exist, a preset that is a path, a CUDA device on a
CPU-only torch, duplicate YAML keys (params, presets, the RIM config), and an accelerate launch in bf16 when the
stage says bf16 is off."""

from __future__ import annotations

import argparse
import contextlib
import io
import shlex

import pytest

from atlas.config import ConfigError, load_config
from atlas.core import paths


def test_a_params_file_that_does_not_exist_is_an_error_and_nothing_is_overwritten(project, capsys):
    from atlas.cli.main import main

    with pytest.raises(ConfigError, match=r"params file not found: nope\.yaml"):
        load_config("nope.yaml")
    paths.SFT_CHECKPOINT.mkdir(parents=True)
    (paths.SFT_CHECKPOINT / "model.safetensors").write_bytes(b"the previous checkpoint")
    assert main(["sft", "--params", "nope.yaml"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line for line in err if line.startswith("error:")] == [
        "error: params file not found: nope.yaml (run from the project root, or pass --params FILE)"
    ]
    assert (paths.SFT_CHECKPOINT / "model.safetensors").read_bytes() == b"the previous checkpoint"


@pytest.mark.parametrize("name", ["../../../evil", "../presets/tiny", "/tmp/evil", "tiny.yaml"])
def test_a_preset_is_a_name_in_configs_presets_never_a_path(project, tmp_path, name):
    (project.parent / "evil.yaml").write_text("models: {device: cpu}\n")
    (tmp_path / "evil.yaml").write_text("models: {device: cpu}\n")
    (project / "params.yaml").write_text(f"preset: {name}\n")
    with pytest.raises(ConfigError, match=r"unknown preset .*\(valid presets: cpu, paper, tiny"):
        load_config()


def test_cuda_on_a_cpu_only_torch_is_refused_before_the_stage_loads_anything(project, capsys):
    import torch

    from atlas.cli.main import main
    from atlas.stages import ingest, models, validate

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    cfg = load_config()
    models.run(cfg)
    ingest.run(cfg)
    validate.run(cfg)
    assert main(["probe", "--set", "models.device=cuda"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "models.device is 'cuda' but torch" in errors[0] and "sees no CUDA device" in errors[0]
    assert not paths.PROBES.exists()


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("params.yaml", "preset: tiny\ngrpo:\n  max_steps: 3\n  beta: 0.1\n  max_steps: 30\n"),
        ("params.yaml", "preset: tiny\ngrpo: {max_steps: 3}\nsft: {max_steps: 2}\ngrpo: {beta: 0.1}\n"),
        ("configs/presets/tiny.yaml", None),
    ],
)
def test_duplicate_yaml_keys_are_refused_naming_the_line(project, where, text):
    path = project / where
    if text is None:  # the preset file itself, with one of its keys repeated
        original = path.read_text()
        text = original.replace("sft:\n  max_steps: 3\n", "sft:\n  max_steps: 3\n  max_steps: 300\n")
        assert text != original
    path.write_text(text)
    expected = rf"{where}: line \d+: duplicate key '(max_steps|grpo)' \(first at line \d+\)"
    with pytest.raises(ConfigError, match=expected):
        load_config()


def test_duplicate_keys_in_the_rim_config_are_refused(tmp_path):
    from atlas.rim import load_rim_config

    path = tmp_path / "rim.yaml"
    path.write_text("rim:\n  variance_threshold: 0.15\n  max_concurrency: 4\n  variance_threshold: 0.9\n")
    with pytest.raises(ConfigError, match=r"rim.yaml: line 4: duplicate key 'variance_threshold' \(first at line 2\)"):
        load_rim_config(path)


def _launch(*argv: str) -> list[str]:
    from atlas.cli.args import add_config_args
    from atlas.ops.launcher import add_launcher_args, maybe_launch

    parser = argparse.ArgumentParser()
    add_config_args(parser)
    add_launcher_args(parser)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert maybe_launch(parser.parse_args(["--launcher", "accelerate", "--dry-run", *argv]), "sft") == 0
    return shlex.split(out.getvalue())


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "no"),  # sft.bf16 is false at the tiny preset; configs/accelerate/ddp.yaml says bf16
        (["--set", "sft.bf16=true"], "bf16"),
        (["--accelerate-config", "configs/accelerate/zero3.yaml"], "no"),
    ],
)
def test_the_launch_takes_its_mixed_precision_from_the_stage_not_the_accelerate_file(project, argv, expected):
    """What `accelerate launch` would really use, parsed by accelerate itself from the command the launcher builds."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    command = _launch(*argv)
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(command[2:]))
    assert args.mixed_precision == expected
