"""Stage `probe`: student probes, baseline samples and log p(gold), cached for GRPO and evaluation.

What the frozen student does alone: computed once, cached by DVC, reused by SFT, GRPO, evaluation and the gate.

For every problem used downstream (the GRPO training prompts and the evaluation problems): `k` baseline answers
graded against the ground truth, the student's diagnostic probe (`protocol.probe`: a separate short greedy
"approach" generation, or the first baseline answer as its "attempt"), and the teacher-forced log-probability of the
gold answer without guidance (the reference point of the likelihood reward), as `ProbeRecord`s in
`data/probe/probes.jsonl`; the means per split in `reports/probe.json`.
"""

from __future__ import annotations

import logging
import statistics
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.io import read_jsonl, write_json
from atlas.teaching.records import ProbeRecord, read_probes, write_probes

log = logging.getLogger(__name__)

SPLIT_FILES = {"train": paths.TRAIN, "dev": paths.DEV, "eval": paths.EVAL}


def selected_problems() -> list[dict]:
    """The problems downstream stages use (validate already applied the `data.max_*` caps): train, dev, then eval."""
    return [
        r for path in SPLIT_FILES.values() if Path(path).exists() for r in read_jsonl(path) if r.get("ground_truth")
    ]


def split_metrics(records: list[ProbeRecord]) -> dict:
    metrics = {}
    for split in SPLIT_FILES:
        rows = [r for r in records if r.split == split]
        if rows:
            samples = [s for r in rows for s in r.baseline]
            metrics[split] = {
                "problems": len(rows),
                "baseline_accuracy": statistics.fmean(r.baseline_accuracy for r in rows),
                "completion_rate": statistics.fmean(s.completed for s in samples),
                "response_tokens": statistics.fmean(s.tokens for s in samples),
                "baseline_logp": statistics.fmean(r.baseline_logp for r in rows),
            }
    return metrics


def run(cfg: AtlasConfig) -> dict:
    from atlas.llm.student import load_student
    from atlas.teaching.protocol import probe_records

    student = load_student(cfg)
    problems = selected_problems()
    log.info(
        "probe: %d problems: %d baseline answers each, %s, and log p(gold)", len(problems), cfg.protocol.baseline_k,
        "a probe each" if cfg.protocol.probe == "approach" else "the first answer as the probe",
    )  # fmt: skip
    records = probe_records(cfg.protocol, student, problems)
    write_probes(paths.PROBES, records)
    metrics = split_metrics(records)
    write_json(paths.PROBE_METRICS, metrics)
    return metrics


def load_probes(split: str | None = None) -> dict[str, ProbeRecord]:
    """The probe stage's records of `split` (all when None), by problem id."""
    return read_probes(paths.PROBES, split)
