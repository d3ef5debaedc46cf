"""New data arriving for retraining: the `data.incoming_dir` folder.

Rows dropped there (`*.jsonl` in any accepted schema) are validated and merged by the ingest stage; DVC tracks the
folder, so the next pipeline run re-ingests, retrains and re-evaluates, and a run with nothing new finds every stage
up to date. `check` compares the folder's content hash with the last one seen; the Prefect watcher flow calls it and
emits the event `atlas.data.arrived`, which triggers the `atlas/train` deployment.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.io import atomic_write_text

log = logging.getLogger(__name__)

EVENT = "atlas.data.arrived"
STATE = paths.STATE_DIR / "incoming.sha256"


def content_hash(folder: Path) -> str:
    """sha256 over the names and bytes of the folder's *.jsonl files (sorted); empty folder -> hash of nothing."""
    digest = hashlib.sha256()
    for file in sorted(Path(folder).glob("*.jsonl")):
        digest.update(file.name.encode() + b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def check(cfg: AtlasConfig, state: Path = STATE) -> tuple[bool, str]:
    """(changed since the last check, current hash); the new hash is remembered."""
    current = content_hash(Path(cfg.data.incoming_dir))
    previous = state.read_text().strip() if state.exists() else None
    if current != previous:
        atomic_write_text(state, current + "\n")
    return current != previous, current


def notify(sha256: str, files: int) -> None:
    """Tell Prefect that new data arrived (the `atlas/train` deployment has a trigger on this event)."""
    from prefect.events import emit_event

    emit_event(
        event=EVENT,
        resource={"prefect.resource.id": "atlas.dataset.incoming", "atlas.sha256": sha256},
        payload={"files": files},
    )
    log.info("emitted %s (incoming content %s)", EVENT, sha256[:12])
