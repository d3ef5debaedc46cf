"""Run a training stage on several GPUs with `accelerate launch` (DDP or DeepSpeed ZeRO-3).

`atlas sft --launcher accelerate --num-processes 8` re-runs the same command as `accelerate launch ... -m atlas.cli
sft --params ... --preset ... --set ...`: each child process runs the stage in-process (the launcher flags are not
passed on), so the configuration the children see is exactly the parent's. `--dry-run` prints the command instead.
The mixed precision comes from the stage's own `bf16` setting (`--mixed_precision bf16|no`), never from the
accelerate config file: a run configured for fp32 is never launched in bf16.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

import yaml

from atlas.core.errors import AtlasError

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "accelerate")
DEFAULT_ACCELERATE_CONFIG = "configs/accelerate/ddp.yaml"
SHIPPED_CONFIGS = ("configs/accelerate/ddp.yaml", "configs/accelerate/zero3.yaml")


class LauncherError(AtlasError):
    """A launcher option that cannot work; the message says which and how to fix it."""


def accelerate_command(
    stage: str, *, config_file: str, num_processes: int, extra_args: list[str], mixed_precision: str | None = None
) -> list[str]:
    """`accelerate launch --config_file F --num_processes N [--mixed_precision P] -m atlas.cli <stage> <args...>`."""
    if not Path(config_file).is_file():
        raise LauncherError(
            f"accelerate config file not found: {config_file} "
            f"(pass --accelerate-config PATH; shipped: {', '.join(SHIPPED_CONFIGS)})"
        )
    if num_processes < 1:
        raise LauncherError(f"--num-processes must be at least 1 (got {num_processes})")
    return [
        "accelerate",
        "launch",
        "--config_file",
        str(config_file),
        "--num_processes",
        str(num_processes),
        *(["--mixed_precision", mixed_precision] if mixed_precision else []),
        "-m",
        "atlas.cli",
        stage,
        *extra_args,
    ]


def add_launcher_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("launcher (multi-GPU)")
    group.add_argument(
        "--launcher", choices=LAUNCHERS, default="local", help="local: run here (default); accelerate: N processes"
    )
    group.add_argument(
        "--num-processes", type=int, default=None, metavar="N", help="processes/GPUs (default: the config file's)"
    )
    group.add_argument(
        "--accelerate-config",
        default=DEFAULT_ACCELERATE_CONFIG,
        metavar="PATH",
        help=f"accelerate config file (default: {DEFAULT_ACCELERATE_CONFIG}; ZeRO-3: configs/accelerate/zero3.yaml)",
    )
    group.add_argument("--dry-run", action="store_true", help="print the command that would run, and exit")


def config_args(args: argparse.Namespace) -> list[str]:
    """The configuration flags of `args` (--params, --preset, --set ...), to hand to a child process unchanged."""
    out = ["--params", str(args.params)]
    if args.preset:
        out += ["--preset", args.preset]
    for item in args.set or []:
        out += ["--set", item]
    return out


def _config_num_processes(config_file: str) -> int:
    try:
        data = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise LauncherError(f"{config_file}: cannot read the accelerate config ({exc})") from None
    if not isinstance(data, dict) or "distributed_type" not in data:
        raise LauncherError(f"{config_file}: not an accelerate config file (no `distributed_type`)")
    value = data.get("num_processes")
    if not isinstance(value, int) or value < 1:
        raise LauncherError(f"{config_file}: no usable num_processes; pass --num-processes N")
    return value


def maybe_launch(args: argparse.Namespace, stage: str) -> int | None:
    """None: the caller runs the stage in this process. Otherwise the exit code of the launched (or printed) run."""
    launcher = getattr(args, "launcher", "local")
    child_args = config_args(args)
    if launcher == "local":
        if not getattr(args, "dry_run", False):
            return None
        print(shlex.join(["atlas", stage, *child_args]))
        return 0
    from atlas.config import load_config

    cfg = load_config(args.params, overrides=args.set, preset=args.preset)  # fail once, here, not in N processes
    section = getattr(cfg, stage, None)
    mixed_precision = ("bf16" if section.bf16 else "no") if hasattr(section, "bf16") else None
    config_file = args.accelerate_config
    if not Path(config_file).is_file():
        accelerate_command(stage, config_file=config_file, num_processes=1, extra_args=[])  # raises the clear error
    num = args.num_processes if args.num_processes is not None else _config_num_processes(config_file)
    command = accelerate_command(
        stage, config_file=config_file, num_processes=num, extra_args=child_args, mixed_precision=mixed_precision
    )
    if args.dry_run:
        print(shlex.join(command))
        return 0
    log.info("launching: %s", shlex.join(command))
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    try:
        return subprocess.run(command, env=env, check=False).returncode
    except FileNotFoundError:
        raise LauncherError("`accelerate` is not on PATH: run `make setup` (it ships with the project)") from None
