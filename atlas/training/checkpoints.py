"""Checkpoint helpers of the training stages: proof that weights moved, and resuming only what this run started.

A GRPO run writes its checkpoints to a work folder marked with a fingerprint of everything that defines the run
(the configuration sections it reads, the SFT policy it starts from, the probes); a rerun with the same fingerprint
resumes from the last checkpoint, any other discards the folder first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path

from atlas.core.io import atomic_write_text

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


def last_checkpoint(work_dir: Path, expected: str) -> str | None:
    """The checkpoint to resume from, or None (and a clean work dir) when it belongs to another configuration."""
    from transformers.trainer_utils import get_last_checkpoint

    marker = work_dir / FINGERPRINT
    if work_dir.exists() and (not marker.exists() or marker.read_text().strip() != expected):
        log.info("discarding checkpoints in %s: they were made with other inputs", work_dir)
        shutil.rmtree(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(marker, expected + "\n")
    return get_last_checkpoint(str(work_dir))
