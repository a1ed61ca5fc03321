"""File access: the one place that writes files (atomically) and reads model files (bounded)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from templater.errors import MalformedModelError, TemplaterError, TooLargeError


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write `data` to `path` through a temp file in the same folder and `os.replace`.

    On any failure (disk full, permission denied, interrupt) the temp file is removed and an
    existing file at `path` is left byte-identical.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    folder = path.parent if str(path.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise TemplaterError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise TemplaterError(f"cannot write {path}: {exc.strerror or exc}") from exc
        raise
    return path


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_bounded(path: str | os.PathLike, limit: int, kind: str) -> bytes:
    """The bytes of a model file, refusing an empty file or one over `limit` before reading it."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if size == 0:
        raise MalformedModelError(f"{path}: file is empty (0 bytes); model has no layers")
    if size > limit:
        raise TooLargeError(f"{path}: {size:,} bytes; {kind} files are limited to {limit:,}")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read: {exc.strerror or exc}") from exc
