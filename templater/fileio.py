"""File access: the one place that writes files (atomically) and reads model files (bounded)."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from templater.errors import MalformedModelError, TemplaterError, TooLargeError, UsageError

# A generated program read as text (diff, verify): the numba program of a model at the
# 10 M-parameter limit is about 250 MB; anything larger is not one of ours.
MAX_PROGRAM_BYTES = 256 << 20


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
    """The bytes of a model file, refusing an empty file or one over `limit` before reading it.

    Only regular files: a device or pipe (/dev/zero, a FIFO) has no size to check. At most the
    stated size + 1 bytes are read (read(n) allocates n bytes first), and a file that grew
    meanwhile is refused.
    """
    path = Path(path)
    size = _regular_size(path)
    if size == 0:
        raise MalformedModelError(f"{path}: file is empty (0 bytes); model has no layers")
    if size > limit:
        raise TooLargeError(f"{path}: {size:,} bytes; {kind} files are limited to {limit:,}")
    try:
        with path.open("rb") as handle:
            data = handle.read(size + 1)
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if len(data) > size:
        raise TemplaterError(f"{path}: the file grew while it was read; try again")
    return data


def read_program_text(path: str | os.PathLike, limit: int = MAX_PROGRAM_BYTES) -> str:
    """The text of a generated program (UTF-8), read with the same bounds as a model file."""
    path = Path(path)
    if _regular_size(path) == 0:
        raise MalformedModelError(f"{path}: not a templater program (the file is empty)")
    data = read_bounded(path, limit, "program")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedModelError(f"{path}: not a templater program (not UTF-8 text)") from exc


def _regular_size(path: Path) -> int:
    try:
        info = path.stat()
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: not a regular file (a folder, device or pipe)")
    return info.st_size


def npy_header(handle: Any) -> tuple[tuple[int, ...], bool, Any]:
    """(shape, fortran order, dtype) from the .npy stream at `handle`, by numpy's own parser.

    On damaged input that parser raises many types (tokenize.TokenError, RecursionError,
    SyntaxError, KeyError...) and warns about Python 2 headers: all become ValueError here.
    """
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(handle)
            return np.lib.format.read_array_header_2_0(handle)
        except Exception as exc:
            raise ValueError(f"{type(exc).__name__}: {exc}") from exc


def check_output(
    path: str | os.PathLike | None,
    inputs: Iterable[str | os.PathLike | None] = (),
    suffixes: tuple[str, ...] = (),
) -> None:
    """Refuse an output path that is one of `inputs` (the same file by any name) or whose
    extension is not one of `suffixes` (what the command writes), before any work is done."""
    if path is None:
        return
    out = Path(path)
    if suffixes and out.suffix.lower() not in suffixes:
        kinds = " or ".join(s.lstrip(".").upper() for s in suffixes)
        raise UsageError(
            f"{out}: the output is written as {kinds}; give a name ending in "
            + " or ".join(suffixes)
        )
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; give a file name for the output")
    for source in inputs:
        if source is None:
            continue
        same = Path(source).resolve() == out.resolve()
        with contextlib.suppress(OSError):
            same = same or os.path.samefile(source, out)
        if same:
            raise UsageError(f"{out}: is also an input ({source}); refusing to write over it")
