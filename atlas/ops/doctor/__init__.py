"""`atlas doctor`: one line per environment check (stack, device, models, judges, services, storage), each with a fix.

Fast and offline-safe: checks run concurrently, every network probe has a ~2 s deadline, torch is imported only when
the configuration asks for CUDA, and nothing is created or written. Secrets are never printed: API keys are reported
by the name of their environment variable, and passwords in URLs are masked.

Layout: `core` (the `Check` record and shared probes), `checks_stack` (python, pinned packages), `checks_models`
(device, models, data source, judge keys), `checks_services` (Prefect, MLflow, DVC, disk), `report` (running them
all, the report). The `atlas doctor` command is `atlas.cli.doctor`: the CLI imports the doctor, never the reverse.
"""

from __future__ import annotations

from atlas.ops.doctor.checks_models import (
    HubProbe,
    check_data_source,
    check_device,
    check_judge_keys,
    check_model,
    hub_check,
)
from atlas.ops.doctor.checks_services import (
    _registry_check,
    _registry_from_sqlite,
    check_disk,
    check_dvc,
    check_mlflow,
    check_prefect,
    prefect_api_url,
)
from atlas.ops.doctor.checks_stack import check_python, check_stack, exact_pins, project_requirements
from atlas.ops.doctor.core import Check, Status, installed_version, mask_url
from atlas.ops.doctor.report import format_report, redact, run_checks

__all__ = [
    "Check",
    "HubProbe",
    "Status",
    "_registry_check",
    "_registry_from_sqlite",
    "check_data_source",
    "check_device",
    "check_disk",
    "check_dvc",
    "check_judge_keys",
    "check_mlflow",
    "check_model",
    "check_prefect",
    "check_python",
    "check_stack",
    "exact_pins",
    "format_report",
    "hub_check",
    "installed_version",
    "mask_url",
    "prefect_api_url",
    "project_requirements",
    "redact",
    "run_checks",
]
