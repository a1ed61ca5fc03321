"""Program files: a generated program read as text and data (never executed), or imported to run."""

from __future__ import annotations

import ast
import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from templater import naming
from templater.errors import MalformedModelError

# Module-level constants every generated program defines.
_HEADER_NAMES = ("MODEL_DIGEST", "N_INPUTS", "N_OUTPUTS", "NORMALIZATION")
_OPTIONAL_NAMES = (
    "MODEL_NAME",
    "INPUT_SHAPE",
    "THRESHOLD",
    "LABELS",
    "LAYER_NAMES",
    "DTYPE",
    "STAGED_UNITS",
    naming.LAYERS,
)


@dataclass(frozen=True, eq=False)
class ProgramFile:
    """A generated program read as text and AST (never executed): its header and shape."""

    path: Path
    text: str
    tree: ast.Module
    constants: dict[str, Any]
    target: str
    layers: tuple[dict[str, Any], ...]  # the LAYERS constant (empty in a program without one)
    head: str  # binary, multiclass or regression (from the entry points it defines)

    @property
    def layouts(self) -> tuple[str, ...]:
        """Each dense layer's layout, as LAYERS lists them."""
        return tuple(str(d.get("layout")) for d in self.layers if d.get("kind") == "dense")

    @property
    def n_inputs(self) -> int:
        return int(self.constants["N_INPUTS"])

    @property
    def dtype(self) -> str:
        """float64, or float32 for `--dtype float32` programs (their DTYPE constant)."""
        return str(self.constants.get("DTYPE", "float64"))

    @property
    def digest(self) -> str:
        return str(self.constants["MODEL_DIGEST"])


def read_program(path: str | os.PathLike) -> ProgramFile:
    """Parse a generated program without running it; refuse anything that is not one."""
    from templater.fileio import read_program_text

    path = Path(path)
    text = read_program_text(path)  # bounded: a link to /dev/zero is refused, not read
    try:
        tree = ast.parse(text, str(path))
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:  # the last two: nesting
        raise MalformedModelError(
            f"{path}: not a templater program (not valid Python: {exc})"
        ) from exc
    constants: dict[str, Any] = {}
    functions: set[str] = set()
    target = "python"
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", None)
            if name in _HEADER_NAMES or name in _OPTIONAL_NAMES:
                try:
                    constants[name] = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError) as exc:
                    raise MalformedModelError(
                        f"{path}, line {node.lineno}: {name} is not a literal"
                    ) from exc
        elif isinstance(node, ast.FunctionDef):
            functions.add(node.name)
        elif isinstance(node, ast.ImportFrom) and node.module == "numba":
            target = "numba"
    missing = [n for n in _HEADER_NAMES if n not in constants]
    if missing or naming.KERNEL not in functions or naming.ENTRY_POINT not in functions:
        what = ", ".join(missing) if missing else f"{naming.KERNEL}/{naming.ENTRY_POINT}"
        raise MalformedModelError(
            f"{path}: not a templater program (expected the generated header and entry points; "
            f"missing {what})"
        )
    n = constants["N_INPUTS"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MalformedModelError(f"{path}: N_INPUTS must be a positive integer, found {n!r}")
    layers = constants.get(naming.LAYERS, ())
    if not isinstance(layers, tuple) or not all(isinstance(d, dict) for d in layers):
        raise MalformedModelError(f"{path}: {naming.LAYERS} is not a tuple of dicts")
    head = "binary" if "decide" in functions else "multiclass" if "predict" in functions else (
        "regression"
    )
    return ProgramFile(path, text, tree, constants, target, layers, head)


def program_outputs(module: types.ModuleType, x: np.ndarray) -> np.ndarray:
    """The program's outputs for each row: (n,) for one output, (n, k) for several."""
    # A writable copy: numba entry points with explicit signatures refuse read-only arrays.
    rows = np.array(x, dtype=np.float64, order="C")
    return np.asarray(module.score_batch(rows), dtype=np.float64)
