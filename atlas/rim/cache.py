"""Persistent cache of judgments, keyed by the logical request, in one SQLite file.

The key (`cache_key`) is what was asked, not how it was obtained: the backend, the endpoint it was sent to (a
server's `base_url`: replies of one server are never served for another), the model, the judge, the tier, the
kind of output, the temperature and the prompt (which holds the trajectory). A judgment that took retries or
re-asks after an invalid reply is stored under the key of the original request, so the next run finds it. Only
replies that parsed into a valid judgment are stored, and the row holds the reply text and its token counts, never
a header or an API key.

The file is safe to share between threads (one lock) and between processes (SQLite locking, WAL journal). A file
that is not a readable SQLite database is found when the cache opens (`ReplyCache(path)`, which a stage calls
before it does any work): it is moved aside (`<name>.corrupt-<time>`, kept for inspection) with a warning that
names both files, and the run starts with an empty cache. An error while reading or writing later costs the cache,
never the run: it is logged once and the cache stops being used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path

from atlas.llm.transport import Reply

logger = logging.getLogger(__name__)

KEY_VERSION = "judgment-v2"
_SCHEMA = """CREATE TABLE IF NOT EXISTS judgments (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    model TEXT NOT NULL,
    judge TEXT NOT NULL,
    temperature REAL NOT NULL,
    text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    created REAL NOT NULL
)"""


def cache_key(
    backend: str, endpoint: str, model: str, judge: str, tier: str, kind: str, temperature: float, prompt: str
) -> str:
    """SHA-256 of the logical request (see the module docstring)."""
    parts = [KEY_VERSION, backend, endpoint, model, judge, tier, kind, round(float(temperature), 4), prompt]
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


class ReplyCache:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._broken = False
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
            for suffix in ("-wal", "-shm"):  # the journal of a broken file belongs to it
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self.path.replace(aside)
            logger.warning(
                "RIM cache %s is not a readable SQLite database (%s): moved it aside to %s and started an empty "
                "cache (delete the moved file once you no longer need it)",
                self.path,
                exc,
                aside,
            )
            self._conn = self._open()

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # a cache: no fsync per reply (WAL keeps it consistent)
            conn.execute(_SCHEMA)
            check = conn.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else 'no answer'}")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def _fail(self, exc: sqlite3.Error) -> None:
        if not self._broken:
            logger.warning("RIM cache %s failed (%s): continuing without the cache", self.path, exc)
        self._broken = True

    def get(self, key: str) -> Reply | None:
        if self._broken:
            return None
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT text, input_tokens, output_tokens FROM judgments WHERE key = ?", (key,)
                ).fetchone()
        except sqlite3.Error as exc:
            self._fail(exc)
            return None
        if row is None:
            return None
        return Reply(text=row[0], input_tokens=int(row[1]), output_tokens=int(row[2]))

    def put(
        self, key: str, *, backend: str, endpoint: str, model: str, judge: str, temperature: float, result: Reply
    ) -> None:
        if self._broken:
            return
        values = (key, backend, endpoint, model, judge, float(temperature), result.text)
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT OR REPLACE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*values, result.input_tokens, result.output_tokens, time.time()),
                )
        except sqlite3.Error as exc:
            self._fail(exc)

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM judgments").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class NullCache:
    """Stands in when caching is disabled."""

    def get(self, key: str) -> Reply | None:
        return None

    def put(self, key: str, **fields: object) -> None:
        return None

    def close(self) -> None:
        return None
