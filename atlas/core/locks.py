"""One process at a time per stage: an exclusive lock file held for the whole run of a stage.

`hold(path, what)` takes an `fcntl.flock` on `path` without waiting. The kernel releases it when the holder exits in
any way (an exception, Ctrl-C, `kill -9`), so a lock is never left stale; the file only names the last holder. A
second process that wants it stops at once with one line naming the holder, before it reads or deletes anything
(a second `atlas grpo` used to discard the first one's live checkpoints).
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from atlas.core.errors import AtlasError


class Busy(AtlasError):
    """Another process holds the lock; the message names it and says what to do."""


@contextmanager
def hold(path: Path | str, what: str) -> Iterator[None]:
    """Hold the lock `path` for the block, or raise `Busy` at once when another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", errors="replace").strip() or "another process"
            raise Busy(
                f"{what} is already running here ({holder}; lock {path}): wait for it to finish, or stop it, "
                "then run this again"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
