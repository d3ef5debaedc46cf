"""Stage `models`: materialize the teacher and student models under data/models/.

Each role lands in `data/models/<role>`: built (tiny), converted once (SmolLM2), or a pointer to a local folder or
hub id. The same non-tiny source for both roles is converted once and copied."""

from __future__ import annotations

import logging
import shutil

from atlas.config import AtlasConfig
from atlas.core import paths

log = logging.getLogger(__name__)


def run(cfg: AtlasConfig) -> dict:
    """Materialize both roles; returns their folders and the dtype each will load in on this machine."""
    from atlas.llm.models import materialize, native_bf16, resolved_dtype

    out: dict[str, str] = {}
    for role in ("teacher", "student"):
        spec = getattr(cfg.models, role)
        target = paths.MODELS_DIR / role
        same = [r for r in out if getattr(cfg.models, r).source == spec.source and spec.source != "tiny"]
        if same:  # e.g. SmolLM2 as teacher and student: convert once, copy
            log.info("the %s model is the %s model (%s): copying", role, same[0], spec.source)
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(out[same[0]], target)
        else:
            log.info("materializing the %s model (%s)", role, spec.source)
            materialize(spec, target)
        out[role] = str(target)
    for role in ("teacher", "student"):
        out[f"{role}_dtype"] = resolved_dtype(getattr(cfg.models, role).dtype, cfg.models.device)
    out["native_bf16"] = str(native_bf16(cfg.models.device))
    log.info("dtypes on this machine: teacher %s, student %s (native bf16: %s)", out["teacher_dtype"],
             out["student_dtype"], out["native_bf16"])  # fmt: skip
    return out
