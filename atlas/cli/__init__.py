"""Layer 8, the command line: `atlas <command>` (`main`), with the `rim` and `doctor` command groups beside it. Each
command parses its flags, calls one function of the layers below and turns a documented mistake into one `error:`
line and a non-zero exit. Nothing below imports the CLI."""

from atlas.cli.main import main

__all__ = ["main"]
