"""Progress of long loops in the logs: `student: baseline x4: 64/608 (10%) 2.1 sequences/s, ETA 4m20s`.

tqdm draws its bar only on a terminal (it is off when stderr is a pipe, as under `dvc repro` and Prefect), so the
probe, SFT, GRPO and evaluation loops also report through `logging` (logger `atlas.progress`): at most once every
`ATLAS_PROGRESS_SECONDS` seconds (default 30; 0 logs every update), and a final line with the elapsed time (a loop
shorter than the interval stays quiet: GRPO's per-step rollouts would flood the log). The clock is a parameter, so
tests need not sleep. `bar` and `track` are both for one loop: the tqdm bar on a terminal
(log lines are then written above it, not through it) and the progress lines in the logs.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from typing import TypeVar

from atlas.core.errors import ConfigError

ENV = "ATLAS_PROGRESS_SECONDS"
DEFAULT_INTERVAL = 30.0
LOGGER = logging.getLogger("atlas.progress")
T = TypeVar("T")


def interval_seconds() -> float:
    """`ATLAS_PROGRESS_SECONDS` (a number of seconds, 0 or more), else the default."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also NaN
        raise ConfigError(f"{ENV}={raw!r}: give the seconds between progress lines (0 or more; unset: 30)")
    return value


def duration(seconds: float) -> str:
    """`45s`, `4m20s`, `1h05m`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """`update(n)` after each piece of work, `close()` at the end (or use it as a context manager). `unit` names one
    piece of work (singular: "sequence", "step"). `initial` is work done before this process started (a resumed
    training run): it counts toward done, not toward the rate."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "item",
        initial: int = 0,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger = LOGGER,
    ):
        self.label, self.total, self.unit = label, total, unit
        self.done = self.initial = initial
        self.interval = interval_seconds() if interval is None else interval
        self.clock, self.logger = clock, logger
        self.start = self.last = clock()
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.done += n
        now = self.clock()
        if now - self.last >= self.interval and self.done < self.total:
            self.last = now
            self.logger.info("%s", self.line(now))

    def close(self) -> None:
        """The final line, once; none for an empty loop or one shorter than the interval."""
        now = self.clock()
        if not self.closed and self.total > 0 and now - self.start >= self.interval:
            self.logger.info("%s", self.line(now, final=True))
        self.closed = True

    def line(self, now: float, final: bool = False) -> str:
        elapsed = now - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        head = f"{self.label}: {self.done}/{self.total}"
        if self.total > 0:
            head += f" ({100 * self.done / self.total:.0f}%)"
        if rate >= 1:
            speed = f"{rate:.1f} {self.unit}s/s"
        elif rate > 0:
            speed = f"{1 / rate:.1f} s/{self.unit}"
        else:
            speed = f"no {self.unit} done yet"
        if final:
            return f"{head} in {duration(elapsed)}, {speed}"
        eta = duration((self.total - self.done) / rate) if rate > 0 else "unknown"
        return f"{head} {speed}, ETA {eta}"

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        elif not self.closed:
            self.closed = True
            self.logger.info("%s, stopped", self.line(self.clock(), final=True))


@contextmanager
def bar(label: str, total: int, unit: str = "item") -> Iterator[Callable[[int], None]]:
    """`with bar("student: probes", n, "sequence") as advance: ... advance(k)`: a tqdm bar when stderr is a terminal,
    and the `Progress` lines in the logs either way."""
    from tqdm.auto import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with (
        Progress(label, total, unit=unit) as logged,
        tqdm(total=total, desc=label, unit=unit, disable=None, leave=False) as shown,
        nullcontext() if shown.disable else logging_redirect_tqdm(tqdm_class=type(shown)),
    ):

        def advance(n: int) -> None:
            shown.update(n)
            logged.update(n)

        yield advance


def track(items: Iterable[T], label: str, total: int, unit: str = "item", size: Callable[[T], int] = lambda _: 1):
    """`for batch in track(batches, label, total, unit, size=len): ...`: each item counts `size(item)` pieces of
    work once the loop body is done with it (`bar` for the loop)."""
    with bar(label, total, unit) as advance:
        for item in items:
            yield item
            advance(size(item))
