"""Stage `config`: validate the configuration and write one JSON file per section (DVC tracks these).

The files under `data/config/` are the DVC deps of the other stages, so a stage re-runs exactly when a section it
reads changes. `rim.json` also holds the resolved RIM judge configuration (the content of the file `rim.config_path`
names, with `rim.overrides`): a change to that file re-runs the stages that call the judges. That file must live
under `configs/`, the folder this stage depends on, or DVC could not see it change. The run logs where the values
differ from the preset they were resolved from (a preset edited since `atlas params` wrote params.yaml shows here).
"""

from __future__ import annotations

import logging
from pathlib import Path

from atlas.config import AtlasConfig, differences, load_config, write_sections
from atlas.core import paths
from atlas.core.errors import ConfigError
from atlas.core.io import read_json, write_json

log = logging.getLogger(__name__)
TRACKED_CONFIGS = Path("configs")  # a dep of this stage in dvc.yaml


def resolved_rim(cfg: AtlasConfig) -> dict:
    """The RIM configuration the judges will run with, checked to be a file DVC tracks."""
    from atlas.rim.config import load_rim_config

    path = Path(cfg.rim.config_path)
    if not path.resolve().is_relative_to(TRACKED_CONFIGS.resolve()):
        raise ConfigError(
            f"rim.config_path '{path}' is outside {TRACKED_CONFIGS}/: DVC would not see it change; move it there"
        )
    return load_rim_config(path, cfg.rim.overrides).model_dump(mode="json")


def run(cfg: AtlasConfig, out_dir: Path | str = paths.CONFIG_DIR) -> dict:
    preset = load_config(None, preset=cfg.preset)
    changed = differences(preset, cfg)
    for key, default, value in changed:
        log.info("config %s = %r (preset '%s' has %r)", key, value, cfg.preset, default)
    rim = resolved_rim(cfg)
    written = write_sections(cfg, out_dir)
    rim_file = Path(out_dir) / "rim.json"
    write_json(rim_file, {**read_json(rim_file), "resolved_rim_config": rim})
    return {
        "preset": cfg.preset,
        "out_dir": str(out_dir),
        "sections": [p.stem for p in written],
        "changed": len(changed),
    }
