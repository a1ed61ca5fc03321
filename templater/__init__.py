"""templater: compile trained networks into literal Python and Numba programs.

net = templater.load("model.npz")            # or from_sklearn / from_torch / from_onnx
source = templater.compile(net, target="numba")
"""

from __future__ import annotations

import importlib
from typing import Any

from templater.compiler import compile
from templater.errors import (
    MalformedModelError,
    TemplaterError,
    TooLargeError,
    UnsafeInputError,
    UnsupportedError,
    UsageError,
)
from templater.modelfile import load
from templater.network import Activation, Dense, Head, Network, Normalization
from templater.programs import import_program

# Importers load their frameworks (torch, onnx, scikit-learn) only when first used.
_LAZY = {
    "from_sklearn": "templater.importers.sklearn",
    "from_torch": "templater.importers",
    "from_onnx": "templater.importers",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'templater' has no attribute {name!r}")


__all__ = [
    "Activation",
    "Dense",
    "Head",
    "MalformedModelError",
    "Network",
    "Normalization",
    "TemplaterError",
    "TooLargeError",
    "UnsafeInputError",
    "UnsupportedError",
    "UsageError",
    "compile",
    "from_onnx",
    "from_sklearn",
    "from_torch",
    "import_program",
    "load",
]
