"""What can be checked offline of the scale-out setup (docs/scaling-out.md): accelerate accepts the shipped configs
with the exact command the launcher builds, the paper preset loads, and DVC takes an object-store remote."""

from __future__ import annotations

import subprocess

import pytest

from atlas.config import load_config
from atlas.ops.launcher import accelerate_command
from tests.conftest import REPO

ACCELERATE_DIR = REPO / "configs" / "accelerate"


@pytest.mark.parametrize(
    ("name", "distributed_type", "expected_env"),
    [
        ("ddp.yaml", "MULTI_GPU", {"ACCELERATE_MIXED_PRECISION": "bf16"}),
        (
            "zero3.yaml",
            "DEEPSPEED",
            {
                "ACCELERATE_MIXED_PRECISION": "bf16",
                "ACCELERATE_USE_DEEPSPEED": "true",
                "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3",
                "ACCELERATE_DEEPSPEED_ZERO3_SAVE_16BIT_MODEL": "true",
            },
        ),
    ],
)
def test_accelerate_accepts_the_configs_and_the_launcher_command(name, distributed_type, expected_env):
    from accelerate.commands.config.config_args import ClusterConfig, load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    path = ACCELERATE_DIR / name
    config = load_config_from_file(str(path))  # rejects unknown keys and bad enum values
    assert isinstance(config, ClusterConfig)
    assert config.distributed_type == DistributedType(distributed_type)

    command = accelerate_command("grpo", config_file=str(path), num_processes=4, extra_args=["--preset", "paper"])
    assert command[:2] == ["accelerate", "launch"]
    args = launch_command_parser().parse_args(command[2:])
    args, defaults, _ = _validate_launch_command(args)
    assert (args.module, args.training_script, args.training_script_args) == (
        True,
        "atlas.cli",
        ["grpo", "--preset", "paper"],
    )
    assert args.num_processes == 4 and args.mixed_precision == "bf16"
    if distributed_type == "DEEPSPEED":
        assert args.use_deepspeed and not args.multi_gpu
        args.deepspeed_fields_from_accelerate_config = list(defaults.deepspeed_config)  # as `accelerate launch` does
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        assert args.multi_gpu and not args.use_deepspeed
        env = prepare_multi_gpu_env(args)
        assert "ACCELERATE_USE_DEEPSPEED" not in env
    for key, value in expected_env.items():
        assert env[key] == value, key


def test_paper_preset_loads_with_gpu_settings():
    cfg = load_config(params_path=None, preset="paper")
    assert cfg.preset == "paper" and cfg.models.device == "cuda"
    assert (cfg.models.teacher.dtype, cfg.models.student.dtype) == ("bfloat16", "bfloat16")
    assert cfg.sft.bf16 and cfg.grpo.bf16 and cfg.grpo.use_vllm
    rim = pytest.importorskip("atlas.rim", reason="atlas.rim is not importable yet")
    judges = rim.load_rim_config(REPO / cfg.rim.config_path, cfg.rim.overrides)
    assert judges.small_model.provider == "gemini" and judges.small_model.api_key_env == "GEMINI_API_KEY"


def test_dvc_takes_an_object_store_remote_offline(tmp_path, monkeypatch):
    """Config only: adding and tuning an s3 remote needs no network and no dvc-s3 (pushing does)."""
    from dvc.cli import main as dvc
    from dvc.config import Config

    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["init", "-q"],
        ["config", "core.analytics", "false"],
        ["remote", "add", "-d", "s3remote", "s3://atlas-bucket/dvc-store"],
        ["remote", "modify", "s3remote", "endpointurl", "https://minio.example.internal:9000"],
        ["remote", "modify", "--local", "s3remote", "profile", "atlas"],
    ):
        assert dvc(argv) == 0, argv
    conf = Config(dvc_dir=str(tmp_path / ".dvc"))
    assert conf["core"]["remote"] == "s3remote" and conf["core"]["analytics"] is False
    remote = conf["remote"]["s3remote"]
    assert remote["url"] == "s3://atlas-bucket/dvc-store"
    assert remote["endpointurl"] == "https://minio.example.internal:9000" and remote["profile"] == "atlas"
    assert "profile" not in (tmp_path / ".dvc" / "config").read_text(encoding="utf-8")  # --local stays out of git
