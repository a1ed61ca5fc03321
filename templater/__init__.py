"""templater: compile trained networks into literal Python and Numba programs."""

from __future__ import annotations

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
    "load",
]
