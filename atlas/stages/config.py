"""Stage `config`: validate the configuration and write one JSON file per section (DVC tracks these).

The files under `data/config/` are the DVC deps of the other stages, so a stage re-runs exactly when a section it
reads changes."""

from __future__ import annotations

from pathlib import Path

from atlas.config import AtlasConfig, write_sections
from atlas.core import paths


def run(cfg: AtlasConfig, out_dir: Path | str = paths.CONFIG_DIR) -> dict:
    written = write_sections(cfg, out_dir)
    return {"preset": cfg.preset, "out_dir": str(out_dir), "sections": [p.stem for p in written]}
