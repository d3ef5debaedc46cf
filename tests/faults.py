"""Helpers of the fault tests: run `atlas <command>` in a child process that kills itself with a real SIGKILL at an
exact point (an audit hook on the file it is about to write), fake servers on 127.0.0.1 that refuse or never answer,
and the one-error-line check of the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import REPO

# Runs `atlas <argv[2:]>` and SIGKILLs itself the moment it opens, for writing, a file whose name contains argv[1]
# (a checkpoint's trainer_state.json, a processed file...): the kill lands exactly where a real one could.
KILLER = r"""
import os, signal, sys
needle = sys.argv[1]

def hook(event, args):
    if event != "open" or not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    mode, flags = (args[1] if len(args) > 1 else None), (args[2] if len(args) > 2 else 0)
    writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        mode is None and isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR))
    if writing and needle in os.fsdecode(args[0]):
        os.kill(os.getpid(), signal.SIGKILL)

sys.addaudithook(hook)
from atlas.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


def child_env() -> dict[str, str]:
    """The test's environment, with this checkout first on the path of the child (and of the `atlas` it runs)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run_killed_at(needle: str, argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """`atlas <argv>` in a child process that dies by SIGKILL when it starts writing a file named like `needle`."""
    return subprocess.run(
        [sys.executable, "-c", KILLER, needle, *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def atlas(argv: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "atlas.cli", *argv],
        cwd=cwd,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_error_line(stderr: str) -> str:
    """The CLI contract for a command that cannot run: exactly one `error:` line and no traceback."""
    assert "Traceback" not in stderr, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr[-3000:]
    return errors[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def silent_server() -> Iterator[str]:
    """A server on 127.0.0.1 that accepts connections, reads what it is sent and never answers: its base URL.
    Stopped (socket closed, thread joined) when the block ends."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    stop, clients = threading.Event(), []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            clients.append(conn)  # keep it open and silent

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in clients:
            conn.close()
        server.close()


def stop_process(proc: subprocess.Popen) -> None:
    """Stop a child we started, by its PID."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
