"""Stage `ingest`: load and normalize the dataset into data/interim/records.jsonl.

The configured source (`data.source`) plus the rows dropped into `data.incoming_dir`, mapped onto one record schema
(see `atlas.data.normalize` for what stops it). The previous output is untouched unless everything succeeded
(written to a temp path, then renamed)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from atlas.config import AtlasConfig
from atlas.core import paths
from atlas.core.io import atomic_write_text
from atlas.data import sources
from atlas.data.card import sha256_text
from atlas.data.normalize import normalize_tables
from atlas.data.schema import record_line

log = logging.getLogger(__name__)


def run(cfg: AtlasConfig, source: str | None = None) -> dict:
    """Load `source` (or data.source) plus data.incoming_dir, normalize, write paths.RECORDS; return a summary."""
    spec = source or cfg.data.source
    kind, tables, revision = sources.load_source(spec, cfg.data)
    incoming = sources.load_incoming(Path(cfg.data.incoming_dir))
    if incoming:
        log.info("merging %d file(s) from %s", len(incoming), cfg.data.incoming_dir)
    records, stats = normalize_tables(tables + incoming, cfg.data.max_field_chars, cfg.data.max_bad_fraction)
    text = "".join(record_line(r) for r in records)
    atomic_write_text(paths.RECORDS, text)
    summary = {
        "source": spec,
        "source_type": kind,
        "revision": revision,
        "rows": len(records),
        "by_source": dict(sorted(Counter(r["source"] for r in records).items())),
        **stats,
        "files": [{"path": t.origin, "rows": len(t.rows)} for t in tables + incoming],
        "content_hash": sha256_text(text),
    }
    log.info("ingested %d records from %s into %s", len(records), spec, paths.RECORDS)
    return summary
