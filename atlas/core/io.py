"""The one family of file writers: nothing is ever half written.

Every writer goes through a temporary path in the destination's own folder and `os.replace`, so a reader sees the old
file or the new one, never a mix: `atomic_path` (for writers that want a path, e.g. matplotlib), `atomic_write_text`,
`write_json`, `write_jsonl`, and `replace_dir` for a whole folder (a checkpoint, a downloaded model) that is swapped
in as one unit.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """A temporary path next to `path`; whatever was written there replaces `path` when the block succeeds, and is
    removed when it fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path | str, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: Path | str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return atomic_write_text(path, text)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


@contextmanager
def replace_dir(path: Path | str) -> Iterator[Path]:
    """A fresh temporary folder next to `path`; when the block succeeds it replaces `path` as one unit (an
    interrupted write never leaves a half-filled folder where `path` was), and when it fails it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        shutil.rmtree(path, ignore_errors=True)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def free_name(folder: Path | str, name: str) -> Path:
    """`folder/name`, or `folder/<stem>.<n><suffix>` (n = 2, 3, ...) when that is taken."""
    target, n = Path(folder) / name, 1
    while target.exists():
        n += 1
        target = Path(folder) / f"{Path(name).stem}.{n}{Path(name).suffix}"
    return target


def move(src: Path | str, folder: Path | str) -> Path:
    """Move the file `src` into `folder` (created as needed) under a free name (`free_name`); returns the new path.
    A rename: the file is never half moved."""
    src = Path(src)
    Path(folder).mkdir(parents=True, exist_ok=True)
    target = free_name(folder, src.name)
    os.replace(src, target)
    return target
