"""The one float formatter: every number in a generated file is written here."""

from __future__ import annotations

import math

from templater.errors import MalformedModelError


def literal(value: float) -> str:
    """The shortest text that reads back as exactly `value` (`repr` of a Python float).

    `str(np.float32(v))` and `%.15g` do not round-trip; `repr(nan)` would be a NameError at
    import time, so non-finite values are refused here as a last line of defence.
    """
    v = float(value)
    if not math.isfinite(v):
        raise MalformedModelError(f"cannot write the non-finite value {v!r} into a program")
    return repr(v)
