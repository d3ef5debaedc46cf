"""Loaders for raw rows: a hub dataset (Arc-ATLAS-Teach layout), a local directory in that layout, one .jsonl/.parquet
file, or the incoming directory. They read and check file structure only (existence, emptiness, UTF-8, JSON);
mapping rows onto the normalized record is `atlas.data.schema`'s job.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from atlas.config import DataSettings
from atlas.core.errors import InputError

log = logging.getLogger(__name__)

HUB_FILES = ("training/sft.jsonl", "training/rl.jsonl")
DATA_SUFFIXES = (".jsonl", ".parquet")
MAX_PROBLEM_LINES = 25
HUB_CONNECT_TIMEOUT = 3.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class RawTable:
    """The rows of one file, each with its 1-based line (jsonl) or row (parquet) number."""

    origin: str  # how messages name the file
    unit: str  # "line" or "row"
    source: str  # the normalized `source` label of its records
    rows: list[tuple[int, Any]]


def format_problems(problems: list[Any], limit: int = MAX_PROBLEM_LINES) -> str:
    """One line per problem; past `limit`, one summary line."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more problems")
    return "\n".join(lines)


def classify_source(spec: str) -> str:
    """'synthetic', 'dir', 'file' or 'hub'. A spec that looks like a path but does not exist is a missing file."""
    if spec == "synthetic":
        return "synthetic"
    path = Path(spec)
    if path.is_dir():
        return "dir"
    if path.exists() or path.suffix in DATA_SUFFIXES or spec.startswith((".", "/", "~")) or not _HUB_ID.match(spec):
        if not path.exists():
            raise InputError(
                f"{spec}: file not found (expected 'synthetic', a directory, a .jsonl/.parquet file or a hub id)"
            )
        if path.suffix not in DATA_SUFFIXES:
            raise InputError(f"{spec}: unsupported file type '{path.suffix}' (use .jsonl or .parquet)")
        return "file"
    return "hub"


def parse_jsonl(data: bytes, origin: str) -> tuple[list[tuple[int, Any]], list[tuple[int, str]]]:
    """(rows with their 1-based line numbers, (line, problem) per bad line: non-UTF-8 bytes, invalid JSON)."""
    rows, problems = [], []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            where = f"{origin}: line {number}"
            problems.append(
                (number, f"{where}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})")
            )
            continue
        if not line.strip():
            continue
        try:
            rows.append((number, json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append((number, f"{origin}: line {number}: invalid JSON ({exc.msg} at column {exc.colno})"))
    return rows, problems


def read_jsonl_rows(path: Path, origin: str | None = None) -> list[tuple[int, Any]]:
    """Rows of a JSON-lines file; every bad line (non-UTF-8, invalid JSON) is reported before raising."""
    origin = origin or str(path)
    if not path.is_file():
        raise InputError(f"{origin}: file not found")
    data = path.read_bytes()
    if not data.strip():
        raise InputError(f"{origin}: file is empty")
    rows, problems = parse_jsonl(data, origin)
    if problems:
        raise InputError(format_problems([message for _, message in problems]))
    if not rows:
        raise InputError(f"{origin}: file is empty")
    return rows


def read_parquet_rows(path: Path, origin: str | None = None) -> list[tuple[int, Any]]:
    origin = origin or str(path)
    if not path.is_file():
        raise InputError(f"{origin}: file not found")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{origin}: not a readable parquet file ({exc})") from None
    rows = table.to_pylist()
    if not rows:
        raise InputError(f"{origin}: file is empty (no rows)")
    return list(enumerate(rows, start=1))


def read_table(path: Path, source: str, origin: str | None = None) -> RawTable:
    path = Path(path)
    if path.suffix == ".parquet":
        return RawTable(origin or str(path), "row", source, read_parquet_rows(path, origin))
    return RawTable(origin or str(path), "line", source, read_jsonl_rows(path, origin))


def load_local_dir(directory: Path, source: str = "local") -> list[RawTable]:
    """The hub layout (training/sft.jsonl, training/rl.jsonl) if present, else every .jsonl/.parquet at the top."""
    directory = Path(directory)
    layout = [directory / name for name in HUB_FILES if (directory / name).exists()]
    files = layout or sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in DATA_SUFFIXES)
    if not files:
        expected = " or ".join(HUB_FILES)
        raise InputError(f"{directory}: no data files (expected {expected}, or .jsonl/.parquet files)")
    return [read_table(path, source) for path in files]


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _hub_reachable(endpoint: str) -> bool:
    """A quick TCP connect, so an offline machine fails in seconds instead of after the hub client's retries."""
    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; let the hub client try
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=HUB_CONNECT_TIMEOUT):
            return True
    except OSError:
        return False


def hub_download(repo_id: str, filename: str, revision: str | None) -> Path:
    """Fetch one file of a hub dataset (or take it from the local hub cache when offline). Tests replace this."""
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    local_only = _offline() or not _hub_reachable(constants.ENDPOINT)
    if local_only:
        log.info("hub not reachable or HF_HUB_OFFLINE set: looking for %s in the local hub cache only", filename)
    try:
        path = hf_hub_download(
            repo_id, filename, repo_type="dataset", revision=revision, local_files_only=local_only, etag_timeout=5
        )
    except LocalEntryNotFoundError:
        if not local_only:
            raise
        why = "HF_HUB_OFFLINE is set" if _offline() else f"{constants.ENDPOINT} is not reachable"
        raise ConnectionError(f"{why} and the file is not in the local hub cache") from None
    return Path(path)


def _revision_of(path: Path) -> str | None:
    """The commit a cached hub file belongs to (…/snapshots/<commit>/training/x.jsonl)."""
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None


def load_hub(repo_id: str, revision: str | None) -> tuple[list[RawTable], str | None]:
    """Both files of the Arc-ATLAS-Teach layout from the hub, and the commit they came from."""
    if revision is None:
        log.warning(
            "no data.revision pin for %s: using the hub's main branch (pin a commit for reproducible data)", repo_id
        )
    tables, resolved = [], revision
    for filename in HUB_FILES:
        try:
            path = hub_download(repo_id, filename, revision)
        except Exception as exc:  # every hub failure mode (offline, 404, auth, timeout) ends the same way for the user
            detail = (str(exc).splitlines() or [""])[0][:200]
            raise InputError(
                f"hub dataset {repo_id}: cannot get {filename} ({type(exc).__name__}: {detail}). "
                f"Without network, use a local copy: on a machine with access run "
                f"`hf download {repo_id} --repo-type dataset --local-dir DIR`, copy DIR here and run "
                f"`atlas ingest --source DIR` (or set data.source: DIR). "
                f"If '{repo_id}' is meant as a local path, it does not exist."
            ) from None
        resolved = _revision_of(path) or resolved
        tables.append(read_table(path, "hub", origin=f"{repo_id}/{filename}"))
    return tables, resolved


def load_source(spec: str, data: DataSettings) -> tuple[str, list[RawTable], str | None]:
    """(source type, its tables, the hub revision they came from) for `data.source`-style `spec`."""
    kind = classify_source(spec)
    if kind == "synthetic":
        from atlas.data.synthetic import generate

        syn = data.synthetic
        rows = list(enumerate(generate(syn.n, syn.seed, list(syn.kinds), syn.difficulty), start=1))
        return kind, [RawTable("synthetic", "record", "synthetic", rows)], None
    if kind == "dir":
        return kind, load_local_dir(Path(spec)), None
    if kind == "file":
        return kind, [read_table(Path(spec), "local")], None
    tables, revision = load_hub(spec, data.revision)
    return kind, tables, revision
