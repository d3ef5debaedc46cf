"""The dataset card: what the processed data holds (counts per split/source/kind, text lengths) and a content hash."""

from __future__ import annotations

import hashlib
import statistics
from collections import Counter
from typing import Any


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _length_stats(texts: list[str]) -> dict[str, float | int]:
    if not texts:
        return {"count": 0}
    lengths = [len(t) for t in texts]
    return {
        "count": len(lengths),
        "min": min(lengths),
        "mean": round(statistics.fmean(lengths), 2),
        "median": statistics.median(lengths),
        "max": max(lengths),
    }


SPLITS = ("train", "dev", "eval")


def _counts(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    return dict(sorted(Counter(str(r[key]) for r in rows).items()))


def build_card(files: dict[str, tuple[str, list[dict[str, Any]], str]], settings: dict[str, Any]) -> dict[str, Any]:
    """`files` maps a name ("train", "dev", "eval", "sft") to (path, rows, file text); `settings` records how it was
    split."""
    unique = {r["id"]: r for _, rows, _ in files.values() for r in rows}
    records = [unique[k] for k in sorted(unique)]
    content = "".join(f"{name}\n{text}" for name, (_, _, text) in sorted(files.items()))
    return {
        "name": "atlas-teaching-data",
        "content_sha256": sha256_text(content),
        "files": {
            name: {"path": path, "rows": len(rows), "sha256": sha256_text(text)}
            for name, (path, rows, text) in sorted(files.items())
        },
        "records": len(records),
        "by_split": _counts(records, "split"),
        "by_source": {split: _counts([r for r in records if r["split"] == split], "source") for split in SPLITS},
        "by_kind": {split: _counts([r for r in records if r["split"] == split], "kind") for split in SPLITS},
        "with_ground_truth": sum(r["ground_truth"] is not None for r in records),
        "with_teaching": sum(r["teaching"] is not None for r in records),
        "lengths": {
            field: _length_stats([r[field] for r in records if r[field] is not None])
            for field in ("problem", "ground_truth", "approach", "teaching")
        },
        "settings": settings,
    }
