"""New data arriving for retraining: the `data.incoming_dir` folder.

Rows dropped there (`*.jsonl` in any accepted schema) are validated and merged by the ingest stage; DVC tracks the
folder, so the next pipeline run re-ingests, retrains and re-evaluates, and a run with nothing new finds every stage
up to date. The Prefect watcher flow calls `check` and emits the event `atlas.data.arrived`, which triggers the
`atlas/train` deployment.

The state (`.atlas/incoming.json`) remembers two hashes of the folder's content: the last one a pipeline run
trained on (`mark_trained`, written by the driver once its stages succeeded) and the last one the watcher announced.
New content is announced once; a run that fails clears the announcement (`mark_failed`), so the next look announces
the same content again and the data is retried, not forgotten.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.errors import InputError
from atlas.core.io import read_json, write_json

log = logging.getLogger(__name__)

EVENT = "atlas.data.arrived"
STATE = paths.STATE_DIR / "incoming.json"


def content_hash(folder: Path) -> str:
    """sha256 over the names and bytes of the folder's *.jsonl files (sorted); empty folder -> hash of nothing."""
    digest = hashlib.sha256()
    for file in sorted(Path(folder).glob("*.jsonl")):
        digest.update(file.name.encode() + b"\0")
        digest.update(file.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def _state(state: Path) -> dict[str, str | None]:
    """The remembered hashes; none yet when the file does not exist (the first look). A damaged file is
    forgotten with a warning: at worst the content is announced, and trained on, once more."""
    data = {}
    if Path(state).exists():
        try:
            data = read_json(state)
        except InputError as exc:
            log.warning("%s: starting afresh", exc)
        if not isinstance(data, dict):
            log.warning("%s: not a JSON object: starting afresh", state)
            data = {}
    return {"trained": data.get("trained"), "announced": data.get("announced")}


def check(cfg: AtlasConfig, state: Path = STATE) -> tuple[bool, str]:
    """(new content to train on, current hash): True once per content that no run has trained on yet (again after
    a failed run)."""
    current = content_hash(Path(cfg.data.incoming_dir))
    seen = _state(state)
    new = current not in (seen["trained"], seen["announced"])
    if new:
        write_json(state, {**seen, "announced": current})
    return new, current


def mark_trained(sha256: str, state: Path = STATE) -> None:
    """A pipeline run's stages succeeded on this incoming content."""
    write_json(state, {"trained": sha256, "announced": None})


def mark_failed(state: Path = STATE) -> None:
    """A pipeline run failed: the content it was announced for must be announced (and retried) again."""
    write_json(state, {**_state(state), "announced": None})


def notify(sha256: str, files: int) -> None:
    """Tell Prefect that new data arrived (the `atlas/train` deployment has a trigger on this event)."""
    from prefect.events import emit_event

    emit_event(
        event=EVENT,
        resource={"prefect.resource.id": "atlas.dataset.incoming", "atlas.sha256": sha256},
        payload={"files": files},
    )
    log.info("emitted %s (incoming content %s)", EVENT, sha256[:12])
