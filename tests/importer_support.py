"""Test support for the importer tests: compile a Network for a target, load it, run it."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import templater
from templater.importers.onnx_backend import run_rows
from templater.network import Network

# Each numba program is a compile of a few seconds: those cases belong to the full run.
TARGETS = ("python", pytest.param("numba", marks=pytest.mark.slow))


def load_program(net: Network, target: str, folder: Path, stem: str = "program") -> ModuleType:
    """Compile `net` through a saved model file (save -> load -> compile) and import it."""
    model = folder / f"{stem}.npz"
    net.save(model)
    source = templater.compile(templater.load(model), target=target)
    path = folder / f"{stem}_{target}.py"
    path.write_text(source)
    return templater.import_program(path)


def outputs(program: ModuleType, net: Network, target: str, x: np.ndarray) -> np.ndarray:
    """All outputs of the program for the rows of `x`, as an (n, n_outputs) array."""
    return run_rows(program, net, target, x)


def decisions(program: ModuleType, net: Network, target: str, x: np.ndarray) -> np.ndarray:
    """decide() (binary) or predict_index() (multi-class) of the program, row by row."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    fn = program.decide if net.head.kind == "binary" else program.predict_index
    rows = list(x) if target == "numba" else [list(map(float, row)) for row in x]
    return np.array([fn(row) for row in rows])
