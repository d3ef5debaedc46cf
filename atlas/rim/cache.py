"""Persistent cache of judge replies, keyed by (backend, model, prompt, temperature), in one SQLite file.

Only replies that parsed into a valid judgment are stored, so a transient bad reply is asked again next time.
The key is a SHA-256 of the four parts; the row holds the reply text and its token counts, never a prompt, a
header or an API key. The file is safe to share between threads (one lock) and between processes (SQLite
locking, WAL journal).
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

_SCHEMA = """CREATE TABLE IF NOT EXISTS replies (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    temperature REAL NOT NULL,
    text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    created REAL NOT NULL
)"""


def cache_key(backend: str, model: str, prompt: str, temperature: float) -> str:
    payload = json.dumps([backend, model, prompt, round(float(temperature), 4)], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ReplyCache:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # a cache: no fsync per reply (WAL keeps it consistent)
            self._conn.execute(_SCHEMA)

    def get(self, key: str) -> Reply | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT text, input_tokens, output_tokens FROM replies WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return Reply(text=row[0], input_tokens=int(row[1]), output_tokens=int(row[2]))

    def put(self, key: str, backend: str, model: str, temperature: float, result: Reply) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    key,
                    backend,
                    model,
                    float(temperature),
                    result.text,
                    result.input_tokens,
                    result.output_tokens,
                    time.time(),
                ),
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM replies").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()


class NullCache:
    """Stands in when caching is disabled."""

    def get(self, key: str) -> Reply | None:
        return None

    def put(self, key: str, backend: str, model: str, temperature: float, result: Reply) -> None:
        return None

    def close(self) -> None:
        return None
