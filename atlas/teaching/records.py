"""The probe record: what the frozen student does alone on one problem, computed once by the probe stage and read by
SFT, GRPO, evaluation and the gate (`data/probe/probes.jsonl`, one JSON object per line)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from atlas.core.errors import InputError
from atlas.core.io import read_jsonl, write_jsonl


@dataclass(frozen=True)
class BaselineSample:
    """One answer of the student alone, graded against the ground truth."""

    text: str
    tokens: int
    truncated: bool
    correct: bool
    completed: bool


@dataclass(frozen=True)
class ProbeRecord:
    id: str
    split: str | None
    kind: str
    problem: str
    ground_truth: str | None  # None only for a problem taught outside the pipeline (nothing is graded)
    probe: str  # what the teacher sees of the student: its stated approach or its first attempt
    baseline: tuple[BaselineSample, ...]  # `protocol.baseline_k` answers of the student alone
    baseline_accuracy: float  # the share of `baseline` that is correct
    baseline_logp: float | None  # log p(gold answer) without guidance (the likelihood reward's reference)

    @property
    def first_attempt(self) -> BaselineSample:
        return self.baseline[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProbeRecord:
        fields = {**data, "baseline": tuple(BaselineSample(**s) for s in data["baseline"])}
        return cls(**fields)


def write_probes(path: Path | str, records: Iterable[ProbeRecord]) -> Path:
    return write_jsonl(path, (r.to_dict() for r in records))


def read_probes(path: Path | str, split: str | None = None) -> dict[str, ProbeRecord]:
    """The records of `split` (all when None), by problem id. A record that does not fit names its line."""
    out = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        try:
            record = ProbeRecord.from_dict(row)
        except (KeyError, TypeError) as exc:
            raise InputError(f"{path}: record {number}: not a probe record ({exc}): re-run the probe stage") from None
        if split is None or record.split == split:
            out[record.id] = record
    return out
