"""Tolerance: how far a generated program may be from the numpy reference.

The tolerance is defined here, once, for every test and tool that compares a program with the
reference (`tolerance_for`):

- exact (0 ULP, bit for bit; -0.0 equals 0.0) when every activation is piecewise linear and the
  program keeps the reference summation order (every layout today). The Python target's window
  normalisation is the exception: it takes `v ** 0.5` (no imports), which differs from a
  correctly rounded sqrt in about 1 of 1,000 values by 1 ULP.
- otherwise (sigmoid, tanh, softmax through exp/tanh; libm, numpy's SIMD kernels and the Python
  target's `e ** v` differ in the last bits) |program - reference| <= ATOL + RTOL * |reference|.

Decisions must agree, except for inputs whose reference score lies within the tolerance of the
threshold (binary) or of the runner-up output (multiclass); those are listed, never hidden.
"""


from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from templater.network import TRANSCENDENTAL, Network

# Worst errors measured on 625-16-16-k sigmoid, tanh and softmax models (both targets, with and
# without window normalisation, 2,000 random inputs) were 1e-16 to 6e-15; the bound keeps a wide
# margin and still catches any edited digit that matters for a decision.
RTOL = 1e-9
ATOL = 1e-9
# float32 programs with exp/tanh, against the float32 reference (tests/test_float32.py).
RTOL32 = 1e-5
ATOL32 = 1e-6


@dataclass(frozen=True)
class Tolerance:
    """How far a program may be from the reference. `exact`: 0 ULP; else atol + rtol*|ref|."""

    exact: bool
    rtol: float
    atol: float
    reason: str

    def bound(self, reference: np.ndarray) -> np.ndarray:
        """The allowed absolute error at each reference value (0 when exact)."""
        ref = np.asarray(reference, dtype=np.float64)
        if self.exact:
            return np.zeros_like(ref)
        return self.atol + self.rtol * np.abs(ref)

    def allows(self, program: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """Elementwise: is `program` within the tolerance of `reference`? (NaN never is.)"""
        program = np.asarray(program, dtype=np.float64)
        reference = np.asarray(reference, dtype=np.float64)
        if self.exact:
            return ulp_distance(program, reference) == 0
        with np.errstate(invalid="ignore"):
            return np.abs(program - reference) <= self.bound(reference)

    def describe(self) -> str:
        if self.exact:
            return f"exact (0 ULP): {self.reason}"
        return f"|error| <= {self.atol:g} + {self.rtol:g}*|reference|: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        return {"exact": self.exact, "rtol": self.rtol, "atol": self.atol, "reason": self.reason}


def tolerance_for(net: Network, target: str, dtype: str = "float64") -> Tolerance:
    """The tolerance a `target` program of `net` is held to (see the module docs). A float32
    program is judged against the float32 reference (`net.forward(x, dtype=np.float32)`)."""
    transcendental = sorted({d.activation.name for d in net.layers} & TRANSCENDENTAL)
    if transcendental:
        rtol, atol = (RTOL32, ATOL32) if dtype == "float32" else (RTOL, ATOL)
        return Tolerance(
            False, rtol, atol,
            f"{', '.join(transcendental)} use exp/tanh, whose last bits differ between libm, "
            "numpy and the Python target's e ** v",
        )
    if target == "python" and net.normalization.kind == "window":
        return Tolerance(
            False, RTOL, ATOL,
            "the Python target's window normalisation takes v ** 0.5, not a correctly "
            "rounded sqrt",
        )
    return Tolerance(
        True, 0.0, 0.0,
        f"piecewise-linear activations in the reference summation order ({dtype})",
    )


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Units in the last place between float64 values (0 for -0.0 vs 0.0; max if NaN)."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    b = np.ascontiguousarray(b, dtype=np.float64)
    # Map the bit patterns to integers ordered like the floats: negatives count down from 0.
    ia, ib = a.view(np.int64), b.view(np.int64)
    low = np.int64(0x7FFFFFFFFFFFFFFF)
    oa = np.where(ia < 0, -(ia & low), ia)
    ob = np.where(ib < 0, -(ib & low), ib)
    # Differences can exceed int64; unsigned arithmetic modulo 2**64 gives them exactly.
    ua, ub = oa.astype(np.uint64), ob.astype(np.uint64)
    out = np.where(oa >= ob, ua - ub, ub - ua)
    return np.where(np.isnan(a) | np.isnan(b), np.iinfo(np.uint64).max, out)
