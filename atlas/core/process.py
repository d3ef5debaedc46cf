"""Processes that die together: a pipeline driver's children never outlive it.

A driver (`atlas run`, the Prefect flow) starts `dvc repro`, which starts the stage process (`atlas <stage>`, maybe
through a shell), which may start workers. When the driver is killed (even with SIGKILL, which it cannot catch):

- its direct children die with it (`die_with_parent`: Linux's PR_SET_PDEATHSIG, set in the child before it runs);
- every `atlas` stage process below it watches the driver named in `ATLAS_DRIVER` (pid and start time, so a reused
  pid is not mistaken for it) and, once the driver is gone, kills its own process group (itself and its workers).

`identity()` (pid, start time, host) is also what MLflow runs are tagged with, so that a run left RUNNING by a dead
process can be recognised and closed at the next start (`atlas.ops.tracking`).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import sys
import threading

log = logging.getLogger(__name__)

DRIVER_ENV = "ATLAS_DRIVER"
_PR_SET_PDEATHSIG = 1


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first), or None when there is no such process
    or no /proc."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as fh:
            stat = fh.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()  # the command name in parentheses may hold spaces


def start_time(pid: int) -> str | None:
    """The kernel's start time of `pid` (clock ticks since boot, from /proc), or None when there is no such
    process or no /proc."""
    fields = _stat(pid)
    return fields[19] if fields else None  # field 22


def identity(pid: int | None = None) -> dict[str, str]:
    pid = os.getpid() if pid is None else pid
    return {"pid": str(pid), "start": start_time(pid) or "", "host": socket.gethostname()}


def alive(pid: int, start: str = "") -> bool:
    """Whether the process `pid` (started at `start`, when known) still runs on this machine."""
    if pid <= 0:
        return False
    fields = _stat(pid)
    if fields is not None:  # a zombie (Z) has exited, even while it waits for its parent to reap it
        return (not start or fields[19] == start) and fields[0] not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return sys.platform != "linux"  # on Linux a live process has a /proc entry


def die_with_parent() -> None:
    """For `subprocess.Popen(preexec_fn=...)`: the child gets SIGKILL when its parent dies (Linux; elsewhere a
    no-op, and the stage processes' watchdog still stops them)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def driver_env() -> dict[str, str]:
    """The environment entry that names this process as the driver of the processes it starts."""
    me = identity()
    return {DRIVER_ENV: f"{me['pid']}:{me['start']}"}


def watch_driver(interval: float = 1.0) -> threading.Thread | None:
    """In a stage process started under a driver: a daemon thread that kills this process group once the driver
    is gone. Returns the thread, or None when no driver is named."""
    named = os.environ.get(DRIVER_ENV, "")
    if not named:
        return None
    pid_text, _, start = named.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        log.warning("ignoring %s=%r (expected pid:start)", DRIVER_ENV, named)
        return None

    def watch() -> None:
        stop = threading.Event()
        while alive(pid, start):
            stop.wait(interval)
        log.error("the pipeline driver (pid %d) is gone: stopping this stage and its workers", pid)
        logging.shutdown()
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)
        finally:
            os._exit(137)

    thread = threading.Thread(target=watch, name="atlas-driver-watch", daemon=True)
    thread.start()
    return thread
