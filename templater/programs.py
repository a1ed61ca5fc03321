"""Loading generated programs: import a program file as a module, without templater's help."""

from __future__ import annotations

import hashlib
import os
import sys
import types
from pathlib import Path

from templater.errors import TemplaterError

# Programs imported so far, by (resolved path, source digest): importing again is free.
_loaded: dict[tuple[str, str], types.ModuleType] = {}


def import_program(path: str | os.PathLike) -> types.ModuleType:
    """Import the program at `path` as a fresh module named after the file (`face_numba`).

    The source is compiled from the file's current text, so a regenerated program is never
    shadowed by a stale .pyc of the same size and second. The module takes the name a user's
    `import face_numba` gives it, as tracebacks then read the same. (numba's on-disk cache does
    not depend on it: a Numba program registers a module name of its own for its functions.)
    """
    path = Path(path).resolve()
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read program: {exc.strerror or exc}") from exc
    key = (str(path), hashlib.sha256(source).hexdigest())
    if key in _loaded:
        return _loaded[key]
    name = path.stem
    module = types.ModuleType(name)
    module.__file__ = str(path)
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise TemplaterError(
            f"{path}: not a valid Python program ({exc.msg}, line {exc.lineno})"
        ) from exc
    previous = sys.modules.get(name)
    sys.modules[name] = module  # as an import would: the program may look itself up
    try:
        exec(code, module.__dict__)
    except BaseException:
        if previous is None:
            del sys.modules[name]
        else:
            sys.modules[name] = previous
        raise
    _loaded[key] = module
    return module
