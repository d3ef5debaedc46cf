"""The configuration flags every `atlas` command takes: `--params FILE`, `--preset NAME`, repeatable `--set k=v`."""

from __future__ import annotations

import argparse

from atlas.config import AtlasConfig, load_config
from atlas.core import paths


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", default=str(paths.PARAMS), help="params file (default: params.yaml)")
    parser.add_argument("--preset", default=None, help="preset name (overrides params.yaml's `preset:`)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. grpo.max_steps=5"
    )


def load_config_from(args: argparse.Namespace) -> AtlasConfig:
    return load_config(args.params, overrides=args.set, preset=args.preset)
