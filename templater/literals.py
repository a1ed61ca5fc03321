"""The one float formatter: every number in a generated file is written here."""

from __future__ import annotations

import math

import numpy as np

from templater.errors import MalformedModelError, UsageError

DTYPES = ("float64", "float32")


def literal(value: float, dtype: str = "float64") -> str:
    """The shortest text that reads back as exactly `value` (`repr` of a Python float).

    With `dtype="float32"`, `value` is first rounded to the nearest float32 and that float32 is
    written exactly (`repr(float(np.float32(v)))`: it reads back as the same float32 however it is
    converted, while the shortest float32 text would be parsed via float64, rounding twice).
    `str(np.float32(v))` and `%.15g` do not round-trip; `repr(nan)` would be a NameError at
    import time, so non-finite values are refused here as a last line of defence.
    """
    v = float(value)
    if not math.isfinite(v):
        raise MalformedModelError(f"cannot write the non-finite value {v!r} into a program")
    if dtype == "float32":
        v = round_float32(v)
        if not math.isfinite(v):
            raise MalformedModelError(f"the value {value!r} overflows float32")
    elif dtype != "float64":
        raise UsageError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
    return repr(v)


def round_float32(value: float) -> float:
    """The float32 nearest to `value`, as a Python float (exactly representable)."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))
