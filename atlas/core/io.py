"""The one family of file writers: nothing is ever half written.

Every writer goes through a temporary path in the destination's own folder and `os.replace`, so a reader sees the old
file or the new one, never a mix: `atomic_path` (for writers that want a path, e.g. matplotlib), `atomic_write_text`,
`write_json`, `write_jsonl`, and `replace_dir` for a whole folder (a checkpoint, a stage's set of outputs) that is
swapped in as one unit: on Linux the old and the new folder trade places in one `renameat2(RENAME_EXCHANGE)`, so at
every instant the path holds the complete old folder or the complete new one, whenever the process is killed.
`move` renames a file into another folder (never over an existing file). The readers turn a missing or damaged file
into an `InputError` that names the file, the line and the stage that writes it.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from atlas.core.errors import InputError
from atlas.core.paths import missing_hint


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
    """A JSON file; a missing or damaged one is an `InputError` naming it (and the stage that writes it)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: file not found{missing_hint(path)}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: line {exc.lineno}: not valid JSON ({exc.msg}){_damaged(path)}") from None


def write_jsonl(path: Path | str, rows: Iterable[dict[str, Any]]) -> Path:
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return atomic_write_text(path, text)


def read_jsonl(path: Path | str) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file; a missing file or a damaged line is an `InputError` naming it."""
    rows = []
    try:
        with open(path, encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    where = f"{path}: line {number}"
                    raise InputError(f"{where}: not valid JSON ({exc.msg}){_damaged(path)}") from None
    except FileNotFoundError:
        raise InputError(f"{path}: file not found{missing_hint(path)}") from None
    return rows


def _damaged(path: Path | str) -> str:
    hint = missing_hint(path).replace(" first", " again")
    return f": the file is damaged or truncated{hint}"


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`); False where unsupported."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM):  # kernel or filesystem without it
        return False
    raise OSError(code, os.strerror(code), str(a))


@contextmanager
def replace_dir(path: Path | str) -> Iterator[Path]:
    """A fresh temporary folder next to `path`; when the block succeeds it replaces `path` as one unit, and when it
    fails it is removed. A reader (or a process killed at any point) finds the whole old folder or the whole new one
    at `path`: the two trade places atomically, then the old one is deleted. Where the kernel cannot swap, the old
    folder is renamed aside first and put back by the next call if the process died in between."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.with_name(path.name + ".tmp"), path.with_name(path.name + ".old")
    if old.exists() and not path.exists():  # a fallback swap was interrupted: the old folder is the good one
        os.replace(old, path)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        if not path.exists():
            os.replace(tmp, path)
        elif _exchange(tmp, path):
            shutil.rmtree(tmp)  # now the old folder
        else:
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
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
