"""The `Check` record every doctor check returns, and the small probes the checks share (installed versions, a
deadline-bound HTTP GET, URL masking). Nothing here imports a heavy package at module level."""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Status = Literal["ok", "warn", "fail"]
PROBE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str = ""

    def line(self) -> str:
        fix = f"  (fix: {self.fix})" if self.fix and self.status != "ok" else ""
        return f"{self.status.upper():<4}  {self.name}: {self.message}{fix}"


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None. Checks call it as `core.installed_version` so that tests
    can replace it in one place (`monkeypatch.setattr(atlas.ops.doctor.core, "installed_version", ...)`)."""
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def mask_url(url: str) -> str:
    """Hide the password of `scheme://user:password@host/...`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def http_get(
    url: str, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
) -> tuple[int | None, str]:
    """(status code, short detail); status None when nothing answered within the timeout."""
    import httpx

    try:
        response = httpx.get(url, timeout=PROBE_TIMEOUT, headers=headers or {}, params=params)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {str(exc)[:120] or 'no answer'}"
    return response.status_code, f"HTTP {response.status_code}"
