"""Checkpoint helpers of the training stages: proof that weights moved, and resuming only what this run started, from
a checkpoint that was completely written.

A training run (SFT or GRPO) writes its checkpoints to a work folder marked with a fingerprint of everything that
defines the run (the configuration sections it reads, the policy it starts from, its data); a rerun with the same
fingerprint resumes, any other discards the folder first. A checkpoint counts only once the trainer has written all
of it (weights, optimizer, scheduler, RNG states, `trainer_state.json`): then `KeepCheckpoints` (the callback of
`atlas.training.callbacks`) writes its completion marker, and only then deletes the older ones beyond
`save_total_limit`. A run killed while a checkpoint was being written leaves a folder without the marker; the next
run ignores and deletes it, and resumes from the newest complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from atlas.core.io import atomic_write_text, write_json

log = logging.getLogger(__name__)
FINGERPRINT = "fingerprint.json"


def snapshot(model) -> dict:
    return {k: v.detach().clone().float() for k, v in model.state_dict().items()}


def weight_change(before: dict, model) -> float:
    """L2 norm of the parameter change: proof that a stage really trained."""
    import torch

    total = 0.0
    for key, value in model.state_dict().items():
        if key in before:
            total += float(torch.sum((value.detach().float() - before[key]) ** 2))
    return total**0.5


def fingerprint(parts: dict) -> str:
    """sha256 of a JSON-able description of a run."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


COMPLETE = "atlas-complete.json"
_PREFIX = "checkpoint-"


def _step(folder: Path) -> int:
    suffix = folder.name.removeprefix(_PREFIX)
    return int(suffix) if suffix.isdigit() else -1


def checkpoint_dirs(work_dir: Path) -> list[Path]:
    """The `checkpoint-<step>` folders of `work_dir`, oldest first."""
    if not Path(work_dir).is_dir():
        return []
    found = [d for d in Path(work_dir).iterdir() if d.is_dir() and d.name.startswith(_PREFIX) and _step(d) >= 0]
    return sorted(found, key=_step)


def is_complete(folder: Path) -> bool:
    return (Path(folder) / COMPLETE).is_file()


def mark_complete(folder: Path, step: int) -> None:
    """Record that the trainer finished writing `folder` (called after TRL saved it, trainer state included)."""
    files = sorted(p.name for p in Path(folder).iterdir() if p.name != COMPLETE)
    write_json(Path(folder) / COMPLETE, {"step": step, "files": files})


def prune(work_dir: Path, keep: int | None) -> list[Path]:
    """Delete the complete checkpoints older than the newest `keep` (None keeps all) and every incomplete one older
    than the newest complete one; the newest complete checkpoint is never deleted. Returns what was deleted."""
    folders = checkpoint_dirs(work_dir)
    complete = [d for d in folders if is_complete(d)]
    if not complete:
        return []
    newest = _step(complete[-1])
    doomed = [d for d in folders if not is_complete(d) and _step(d) < newest]
    if keep is not None:
        doomed += complete[: max(len(complete) - keep, 0)]
    for folder in doomed:
        shutil.rmtree(folder, ignore_errors=True)
    return doomed


def last_checkpoint(work_dir: Path, expected: str) -> str | None:
    """The newest complete checkpoint to resume from, or None. A folder made with another configuration is
    discarded first; incomplete checkpoints (a run killed while writing one) are deleted with a warning."""
    marker = work_dir / FINGERPRINT
    if work_dir.exists() and (not marker.exists() or marker.read_text().strip() != expected):
        log.info("discarding checkpoints in %s: they were made with other inputs", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, expected + "\n")
    for folder in checkpoint_dirs(work_dir):
        if not is_complete(folder):
            log.warning("ignoring %s: it was not completely written (the run stopped while saving it)", folder)
            shutil.rmtree(folder)
    complete = checkpoint_dirs(work_dir)
    return str(complete[-1]) if complete else None
