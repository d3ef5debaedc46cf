"""The scale-out launcher: exact `accelerate launch` commands, the shipped configs, and clear errors."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import shutil

import pytest
import yaml

from atlas.cli.args import add_config_args
from atlas.ops.launcher import LauncherError, accelerate_command, add_launcher_args, maybe_launch
from tests.conftest import REPO


@pytest.fixture
def project(tmp_path, monkeypatch):
    """Just what the launcher reads: configs/ and params.yaml (no git or DVC needed)."""
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "params.yaml").write_text("preset: tiny\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_config_args(parser)
    add_launcher_args(parser)
    return parser.parse_args(list(argv))


def _launch(args: argparse.Namespace, stage: str) -> tuple[int | None, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = maybe_launch(args, stage)
    return code, out.getvalue()


@pytest.mark.parametrize(
    ("stage", "argv", "expected"),
    [
        (
            "sft",
            ["--launcher", "accelerate", "--num-processes", "4", "--dry-run"],
            "accelerate launch --config_file configs/accelerate/ddp.yaml --num_processes 4 --mixed_precision no "
            "-m atlas.cli sft "
            "--params params.yaml",
        ),
        (
            "grpo",
            [
                "--launcher=accelerate",
                "--accelerate-config",
                "configs/accelerate/zero3.yaml",
                "--preset",
                "tiny",
                "--set",
                "grpo.max_steps=2",
                "--set",
                "grpo.beta=0.0",
                "--dry-run",
            ],
            "accelerate launch --config_file configs/accelerate/zero3.yaml --num_processes 8 --mixed_precision no "
            "-m atlas.cli grpo "
            "--params params.yaml --preset tiny --set grpo.max_steps=2 --set grpo.beta=0.0",
        ),
    ],
)
def test_dry_run_prints_the_exact_command(project, stage, argv, expected):
    code, output = _launch(_parse(*argv), stage)
    assert code == 0
    assert shlex.split(output) == expected.split()
    assert "--launcher" not in output and "--dry-run" not in output


def test_accelerate_command_argv(project):
    command = accelerate_command(
        "sft", config_file="configs/accelerate/zero3.yaml", num_processes=2, extra_args=["--set", "a.b=1"]
    )
    assert command == [
        "accelerate",
        "launch",
        "--config_file",
        "configs/accelerate/zero3.yaml",
        "--num_processes",
        "2",
        "-m",
        "atlas.cli",
        "sft",
        "--set",
        "a.b=1",
    ]


def test_local_launcher_runs_in_process_and_dry_run_never_trains(project):
    assert _launch(_parse(), "sft") == (None, "")
    code, output = _launch(_parse("--dry-run", "--set", "sft.max_steps=1"), "sft")
    assert code == 0 and shlex.split(output) == ["atlas", "sft", "--params", "params.yaml", "--set", "sft.max_steps=1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--accelerate-config", "configs/accelerate/nope.yaml"], "accelerate config file not found: configs/acc"),
        (["--num-processes", "0"], "--num-processes must be at least 1 (got 0)"),
        (["--set", "grpo.num_generations=3"], "must be divisible by num_generations"),
    ],
)
def test_bad_launcher_options_are_clear_errors(project, argv, message):
    from atlas.core.errors import AtlasError

    with pytest.raises(AtlasError) as info:
        _launch(_parse("--launcher", "accelerate", "--dry-run", *argv), "grpo")
    assert message in str(info.value)
    if "not found" in message:
        assert isinstance(info.value, LauncherError) and "configs/accelerate/zero3.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("name", "distributed_type", "extra"),
    [("ddp.yaml", "MULTI_GPU", {"gpu_ids": "all"}), ("zero3.yaml", "DEEPSPEED", {})],
)
def test_shipped_configs_have_the_right_keys(name, distributed_type, extra):
    data = yaml.safe_load((REPO / "configs" / "accelerate" / name).read_text(encoding="utf-8"))
    assert data["distributed_type"] == distributed_type
    assert data["mixed_precision"] == "bf16" and data["num_machines"] == 1 and data["num_processes"] >= 2
    assert data["compute_environment"] == "LOCAL_MACHINE" and data["use_cpu"] is False
    for key, value in extra.items():
        assert data[key] == value
    if distributed_type == "DEEPSPEED":
        assert data["deepspeed_config"]["zero_stage"] == 3
        assert data["deepspeed_config"]["zero3_save_16bit_model"] is True


@pytest.mark.slow
def test_accelerate_really_runs_the_stage_with_the_same_configuration(project):
    """A real `accelerate launch` (one CPU process) of a cheap stage: the child sees the parent's --set."""
    cpu = project / "cpu.yaml"
    cpu.write_text("compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nuse_cpu: true\nnum_processes: 1\n")
    args = _parse("--launcher", "accelerate", "--accelerate-config", str(cpu), "--set", "grpo.max_steps=7")
    code, _ = _launch(args, "config")
    assert code == 0
    section = json.loads((project / "data" / "config" / "grpo.json").read_text(encoding="utf-8"))
    assert section["grpo"]["max_steps"] == 7
