"""The one patch of a TRL internal, guarded: completion-only scoring of TRL's fused LM head on CPU.

TRL 1.16 scores every position with its chunked log-prob kernel when Triton is not in use, to keep tile shapes stable
for compilers (`trl.trainer.utils._use_triton`); on CPU nothing is compiled, and scoring the prompt positions too made
that kernel 40% of an SFT step here (10.3 s -> 6.4 s per SFT step of the cpu preset with the patch). The per-token
values are the same either way: `tests/test_trl_compat.py` trains a tiny model with and without it and compares the
losses step by step. The patch applies only inside `score_completions_only(...)`, only on CPU, only with the pinned
TRL (another version runs unpatched, with a warning), and the original is restored on exit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)
PINNED_TRL = "1.16.0"


@contextmanager
def score_completions_only(device: str) -> Iterator[bool]:
    """Within the block, TRL's fused LM head scores only labelled positions on CPU too. Yields whether it applied."""
    if device != "cpu":
        yield False
        return
    import trl
    import trl.trainer.utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if trl.__version__ != PINNED_TRL or original is None:
        log.warning(
            "trl %s is not the pinned %s: CPU scoring stays on every position (slower)", trl.__version__, PINNED_TRL
        )
        yield False
        return

    def use_compact_path(device) -> bool:
        return device.type == "cpu" or original(device)

    trl_utils._use_triton = use_compact_path
    try:
        yield True
    finally:
        trl_utils._use_triton = original
