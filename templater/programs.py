"""Loading generated programs: import a program file as a module, without templater's help."""

from __future__ import annotations

import hashlib
import os
import sys
import types
from pathlib import Path

from templater.errors import TemplaterError


def import_program(path: str | os.PathLike) -> types.ModuleType:
    """Import the program at `path` as a fresh module.

    The source is compiled from the file's current text, so a regenerated program is never
    shadowed by a stale .pyc of the same size and second; numba's on-disk cache (cache=True)
    still works because the code object names the real file.
    """
    path = Path(path).resolve()
    try:
        source = path.read_bytes()
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read program: {exc.strerror or exc}") from exc
    digest = hashlib.sha256(source).hexdigest()[:12]
    name = f"templater_program_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(path)
    try:
        code = compile(source, str(path), "exec")
    except SyntaxError as exc:
        raise TemplaterError(
            f"{path}: not a valid Python program ({exc.msg}, line {exc.lineno})"
        ) from exc
    sys.modules[name] = module  # numba's cache looks the module up by name
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return module
