"""The learning memory: the `student_learning` / `teacher_learning` that session evaluations extract, kept in one
SQLite file (default `.atlas/rim_memory.sqlite`) that the next run reads.

Each entry is one learning seen in one judged session: its kind (`student` | `teacher`), its text, the session's
task, the session score, when it was judged (UTC), which judge produced it (`judge`: the tier-1 and arbiter models;
`config_sha256`: a fingerprint of the whole judge configuration and the focus prompt) and where the session came from
(`source`: input file and line). Entries are deduplicated on (kind, learning text with case and spacing folded,
task, config): judging the same file again with the same judges adds nothing, while the same learning drawn from
another task, or by another judge configuration, is one more observation of it. `recent` groups the observations
into distinct learnings (how many sessions showed each, when last) for the session judge's prompt and
`atlas rim memory`.

Safe against concurrent and killed writers: every `append` is one SQLite transaction (`BEGIN IMMEDIATE`, WAL
journal, `synchronous=FULL`), so another process waits for it (up to 30 s) and a writer killed at any point leaves
the memory as it was before that append, never half of it. A file that is not a readable memory is refused with one
line naming it (it is never moved aside or emptied: a memory is not a cache).

What reads the memory: `atlas rim session` (the recent learnings go into the session judge's prompt, as a data
block) and `atlas rim memory` (lists them). Nothing in the training pipeline reads it.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from atlas.core.errors import AtlasError, InputError

if TYPE_CHECKING:
    from atlas.rim.config import RIMConfig

DEFAULT_MEMORY_PATH = Path(".atlas/rim_memory.sqlite")  # beside the reply cache; `atlas rim --memory` moves it
SCHEMA_VERSION = 1
MAX_LEARNING_CHARS = 2000
Kind = Literal["student", "teacher"]
KINDS: tuple[Kind, ...] = ("student", "teacher")

_SCHEMA = """CREATE TABLE IF NOT EXISTS learnings (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('student', 'teacher')),
    text TEXT NOT NULL,
    text_key TEXT NOT NULL,
    task TEXT NOT NULL,
    task_sha256 TEXT NOT NULL,
    score REAL,
    judged_at TEXT NOT NULL,
    judge TEXT NOT NULL,
    config_sha256 TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (kind, text_key, task_sha256, config_sha256)
)"""
_COLUMNS = ("kind", "text", "task", "score", "judged_at", "judge", "config_sha256", "source")


@dataclass(frozen=True)
class Learning:
    """One learning seen in one judged session."""

    kind: Kind
    text: str
    task: str
    score: float | None
    judged_at: str
    judge: str
    config_sha256: str
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def text_key(text: str) -> str:
    """What makes two learnings the same: the text with case, spacing and trailing punctuation folded."""
    return re.sub(r"\s+", " ", text).strip().rstrip(".!;").casefold()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def now_utc() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def learnings_of(
    payload: dict[str, Any], task: str, *, judge: str, config_sha256: str, source: str = "", judged_at: str = ""
) -> list[Learning]:
    """The non-null learnings of one session judgment (`session_payload`); none when the judgment failed."""
    if payload.get("score") is None:
        return []
    out = []
    for kind in KINDS:
        text = payload.get(f"{kind}_learning")
        if isinstance(text, str) and text.strip():
            out.append(
                Learning(
                    kind=kind,
                    text=text.strip()[:MAX_LEARNING_CHARS],
                    task=task,
                    score=payload["score"],
                    judged_at=judged_at or now_utc(),
                    judge=judge,
                    config_sha256=config_sha256,
                    source=source,
                )
            )
    return out


class LearningMemory:
    """The memory file. `create=False` (for readers) refuses a path where no memory exists yet."""

    def __init__(self, path: Path | str | None = None, *, create: bool = True) -> None:
        self.path = Path(path) if path is not None else DEFAULT_MEMORY_PATH
        if not self.path.exists() and not create:
            raise InputError(f"{self.path}: no learning memory here (`atlas rim session` writes it)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._open()
        except sqlite3.DatabaseError as exc:
            raise InputError(
                f"{self.path}: not a readable learning memory ({exc}): move the file aside or pass another --memory"
            ) from None

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")  # a memory, not a cache: a committed append survives a crash
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise sqlite3.DatabaseError(f"written by a newer atlas (schema {version} > {SCHEMA_VERSION})")
            conn.execute(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            check = conn.execute("PRAGMA quick_check").fetchone()
            if not check or check[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {check[0] if check else 'no answer'}")
        except sqlite3.DatabaseError:
            conn.close()
            raise
        return conn

    def append(self, learnings: Iterable[Learning]) -> tuple[int, int]:
        """Add the learnings in one transaction: (added, already known)."""
        rows = [
            (item.kind, item.text, text_key(item.text), item.task, sha256(item.task), item.score, item.judged_at,
             item.judge, item.config_sha256, item.source)
            for item in learnings
        ]  # fmt: skip
        if not rows:
            return 0, 0
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")  # waits (up to 30 s) for another writer's transaction
            try:
                before = conn.total_changes
                conn.executemany(
                    "INSERT OR IGNORE INTO learnings (kind, text, text_key, task, task_sha256, score, judged_at, "
                    "judge, config_sha256, source) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                added = conn.total_changes - before
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise AtlasError(f"{self.path}: could not record {len(rows)} learnings ({exc}): none was added") from None
        return added, len(rows) - added

    def entries(self, kinds: Sequence[Kind] = KINDS) -> list[Learning]:
        """Every observation, oldest first."""
        marks = ", ".join("?" for _ in kinds)
        cursor = self._conn.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM learnings WHERE kind IN ({marks}) ORDER BY id", tuple(kinds)
        )
        return [Learning(*row) for row in cursor.fetchall()]

    def recent(self, kinds: Sequence[Kind] = KINDS, limit: int = 5) -> list[dict[str, Any]]:
        """The distinct learnings of these kinds, most recently seen first (then the most often seen). Each is shown
        in its first wording (the one the judge is asked to reuse), with the number of sessions (distinct tasks)
        that showed it and the latest of them: when, its score and task, and which judges."""
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        for item in self.entries(kinds):  # oldest first
            group = groups.setdefault(
                (item.kind, text_key(item.text)), {"kind": item.kind, "learning": item.text, "_tasks": set()}
            )
            group["_tasks"].add(sha256(item.task))
            group.update(last_seen=item.judged_at, last_score=item.score, last_task=item.task, judge=item.judge)
        ranked = sorted(groups.values(), key=lambda g: (g["last_seen"], len(g["_tasks"])), reverse=True)
        return [
            {**{k: v for k, v in group.items() if k != "_tasks"}, "sessions": len(group["_tasks"])}
            for group in ranked[: max(0, limit)]
        ]

    def context(self, per_kind: int = 5) -> list[dict[str, Any]]:
        """What the session judge is shown: the `per_kind` most recent student and teacher learnings."""
        return self.recent(("student",), per_kind) + self.recent(("teacher",), per_kind) if per_kind else []

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM learnings").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> LearningMemory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def judge_identity(cfg: RIMConfig, focus: str | None) -> tuple[str, str]:
    """Which judges produced a learning: (their models, a fingerprint of the whole judge configuration except where
    its cache lives, plus the focus prompt: 16 hex digits of SHA-256)."""
    small, large = cfg.small_model, cfg.large_model
    judge = f"{small.provider}:{small.model} / arbiter {large.provider}:{large.model}"
    data = {key: value for key, value in cfg.model_dump(mode="json").items() if key != "cache"}
    return judge, sha256(json.dumps({"config": data, "focus": focus}, sort_keys=True, default=str))[:16]
