"""`atlas doctor`: the environment checks of `atlas.ops.doctor`, one line each with the fix; exits 1 on a blocking
problem."""

from __future__ import annotations

from atlas.cli.args import add_config_args, load_config_from
from atlas.core.errors import AtlasError
from atlas.ops.doctor import Check, format_report, run_checks


def _run(args) -> int:
    checks: list[Check] = []
    try:
        cfg = load_config_from(args)
        checks.append(Check("config", "ok", f"preset '{cfg.preset}' ({args.params} + {len(args.set)} override(s))"))
    except AtlasError as exc:
        cfg = None
        checks.append(Check("config", "fail", str(exc).splitlines()[0], "fix the key named here (params.yaml/--set)"))
    checks += run_checks(cfg)
    print(format_report(checks))  # the CLI's own output
    return 1 if any(c.status == "fail" for c in checks) else 0


def add_parser(subparsers) -> None:
    help_text = "check the environment: stack pins, device, models, judge keys, Prefect, MLflow, DVC, disk"
    parser = subparsers.add_parser("doctor", help=help_text, description=help_text)
    add_config_args(parser)
    parser.set_defaults(func=_run)
