"""Running the doctor's checks: every check concurrently in a stable order, and the report (one line per check,
secrets redacted)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from atlas.ops.doctor.checks_models import HubProbe, check_data_source, check_device, check_judge_keys, check_model
from atlas.ops.doctor.checks_services import check_disk, check_dvc, check_mlflow, check_prefect
from atlas.ops.doctor.checks_stack import check_python, check_stack
from atlas.ops.doctor.core import Check

_SECRET_NAME = re.compile(r"(^|_)(API_?KEY|KEY|TOKEN|SECRET|PASSWORD|PASSWD)(_|$)", re.IGNORECASE)


def run_checks(cfg, *, env: Mapping[str, str] = os.environ, root: Path | None = None) -> list[Check]:
    """Every check, in a stable order, run concurrently. `cfg=None` (a configuration that did not load) skips the
    checks that need it. A check that crashes is reported as a failure, never hidden."""
    root = Path(root or Path.cwd()).resolve()
    hub = HubProbe(env)
    jobs: list[tuple[str, Callable[[], list[Check] | Check]]] = [
        ("python", lambda: check_python(root)),
        ("stack", lambda: check_stack(root)),
    ]
    if cfg is not None:
        jobs += [
            ("device", lambda: check_device(cfg)),
            ("model teacher", lambda: check_model("teacher", cfg, env, hub, root)),
            ("model student", lambda: check_model("student", cfg, env, hub, root)),
            ("data source", lambda: check_data_source(cfg, env, hub)),
            ("judge keys", lambda: check_judge_keys(cfg, env)),
        ]
    jobs += [
        ("prefect server", lambda: check_prefect(env, root)),
        ("mlflow store", lambda: check_mlflow(cfg, env)),
        ("dvc", lambda: check_dvc(root, env)),
        ("disk", lambda: check_disk(root)),
    ]
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [(name, pool.submit(fn)) for name, fn in jobs]
    checks: list[Check] = []
    for name, future in futures:
        try:
            result = future.result()
        except Exception as exc:  # a crashing check is a finding, not a reason to hide the others
            result = Check(name, "fail", f"check crashed: {type(exc).__name__}: {exc}", "report this as a bug")
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def redact(text: str, env: Mapping[str, str]) -> str:
    """Belt and braces: replace the value of every secret-looking environment variable, should one slip through."""
    for name, value in env.items():
        if _SECRET_NAME.search(name) and len(value) >= 6 and value in text:
            text = text.replace(value, "***")
    return text


def format_report(checks: list[Check], env: Mapping[str, str] = os.environ) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in ("ok", "warn", "fail")}
    lines = [c.line() for c in checks]
    lines.append(f"doctor: {counts['ok']} ok, {counts['warn']} warn, {counts['fail']} fail")
    return redact("\n".join(lines), env)
