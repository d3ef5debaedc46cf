"""Stage `ingest`: load and normalize the dataset into data/interim/records.jsonl.

The configured source (`data.source`, the curated data: its problems stop the stage, see `atlas.data.normalize`)
plus the files dropped into `data.incoming_dir`, screened by `atlas.data.drops`: a drop never replaces a curated
answer unless configured to, its duplicates are dropped and counted, and a drop with bad lines is moved aside with
its report (every bad line named) instead of failing this run and every one after it. The previous output is
untouched unless everything succeeded (written to a temp path, then renamed); rejected drops are moved only after
that.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.io import atomic_write_text
from atlas.data import drops, sources
from atlas.data.card import sha256_text
from atlas.data.normalize import normalize_tables
from atlas.data.schema import record_line

log = logging.getLogger(__name__)


def run(cfg: AtlasConfig, source: str | None = None) -> dict:
    """Load `source` (or data.source) plus data.incoming_dir, normalize, write paths.RECORDS; return a summary."""
    spec = source or cfg.data.source
    kind, tables, revision = sources.load_source(spec, cfg.data)
    curated, stats = normalize_tables(tables, cfg.data.max_field_chars, cfg.data.max_bad_fraction)
    incoming_dir = Path(cfg.data.incoming_dir)
    screened = drops.screen(incoming_dir, curated, cfg.data)
    if screened.files:
        log.info("screened %d file(s) from %s: %s", len(screened.files), incoming_dir, screened.stats())
    drops.log_problems(screened)
    records = sorted(curated + screened.records, key=lambda r: r["id"])
    text = "".join(record_line(r) for r in records)
    atomic_write_text(paths.RECORDS, text)
    reports = drops.set_aside(screened, incoming_dir)
    summary = {
        "source": spec,
        "source_type": kind,
        "revision": revision,
        "rows": len(records),
        "by_source": dict(sorted(Counter(r["source"] for r in records).items())),
        **stats,
        **screened.stats(),
        "files": [{"path": t.origin, "rows": len(t.rows)} for t in tables]
        + [{"path": str(d.path), "rows": len(d.records), "verdict": d.verdict} for d in screened.files],
        "rejected_reports": [str(r) for r in reports],
        "content_hash": sha256_text(text),
    }
    log.info("ingested %d records from %s into %s", len(records), spec, paths.RECORDS)
    return summary
