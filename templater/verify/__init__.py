"""Verifying: run a generated program on data and judge it against the numpy reference.

The tolerance is defined in `tolerance`, once, for every test and tool that compares a program
with the reference (`tolerance_for`):

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

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import UsageError
from templater.network import Network
from templater.programs import import_program
from templater.verify.inputs import (
    DATA_SPECS,
    FACE_WIDTH,
    MAX_DATA_ROWS,
    RANDOM_COUNT,
    RANDOM_RANGE,
    Inputs,
    face_test_split,
    load_inputs,
    load_npy,
)
from templater.verify.programs import ProgramFile, program_outputs, read_program
from templater.verify.tolerance import (
    ATOL,
    ATOL32,
    RTOL,
    RTOL32,
    Tolerance,
    tolerance_for,
    ulp_distance,
)

__all__ = [
    "ATOL", "ATOL32", "DATA_SPECS", "FACE_WIDTH", "MAX_DATA_ROWS", "RANDOM_COUNT", "RANDOM_RANGE",
    "RTOL", "RTOL32", "Finding", "Inputs", "ProgramFile", "Report", "Tolerance", "compare_outputs",
    "face_test_split", "load_inputs", "load_npy", "program_outputs", "read_program",
    "tolerance_for", "ulp_distance", "verify",
]

@dataclass(frozen=True)
class Finding:
    """One input where the program and the reference disagree beyond the tolerance."""

    index: int
    program: float
    reference: float
    error: float
    ulps: int
    what: str  # "value" or "decision"


@dataclass(frozen=True)
class Report:
    model: str
    program: str
    target: str
    data: str
    n_inputs: int
    tolerance: Tolerance
    max_abs_error: float
    max_ulps: int
    decisions: str  # what a decision is: "score > threshold", "argmax" or "none"
    decisions_agree: int
    near: tuple[tuple[int, float], ...]  # (input, reference score) within tolerance of the edge
    findings: tuple[Finding, ...]

    @property
    def passed(self) -> bool:
        return not self.findings

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "model": self.model,
            "program": self.program,
            "target": self.target,
            "data": self.data,
            "inputs": self.n_inputs,
            "tolerance": self.tolerance.to_json(),
            "max_abs_error": self.max_abs_error,
            "max_ulps": self.max_ulps,
            "decisions": self.decisions,
            "decisions_agree": self.decisions_agree,
            "near_threshold": [{"input": i, "reference": s} for i, s in self.near],
            "findings": [f.__dict__ for f in self.findings],
        }

    def lines(self, show: int = 10) -> list[str]:
        out = [
            f"verify {self.program} against the reference of {self.model} ({self.target})",
            f"data: {self.data}",
            f"tolerance: {self.tolerance.describe()}",
            f"max abs error {self.max_abs_error:.3g}, max ULP distance {self.max_ulps}",
        ]
        if self.decisions != "none":
            out.append(
                f"decisions ({self.decisions}) agree on {self.decisions_agree} of {self.n_inputs}"
            )
            near = "".join(f", input {i} ({s!r})" for i, s in self.near[:show])
            more = f" and {len(self.near) - show} more" if len(self.near) > show else ""
            out.append(f"within the tolerance of the decision edge: {len(self.near)}{near}{more}")
        if self.passed:
            out.append("OK: the program agrees with the reference")
            return out
        out.append(f"FAIL: {len(self.findings)} input(s) beyond the tolerance")
        for f in self.findings[:show]:
            out.append(
                f"  input {f.index}: {f.what} differs: program {f.program!r}, reference "
                f"{f.reference!r} (error {f.error:.3g}, {f.ulps} ULP)"
            )
        if len(self.findings) > show:
            out.append(f"  ... and {len(self.findings) - show} more")
        return out


def compare_outputs(
    net: Network, got: np.ndarray, x: np.ndarray, tolerance: Tolerance, dtype: str = "float64"
) -> tuple[float, int, int, tuple[tuple[int, float], ...], tuple[Finding, ...]]:
    """Judge program outputs `got` for rows `x` against `net`'s exact reference in `dtype`."""
    ref = np.asarray(net.forward(x, exact=True, dtype=np.dtype(dtype).type), dtype=np.float64)
    got = np.asarray(got, dtype=np.float64).reshape(ref.shape)
    n = ref.shape[0]
    ref2, got2 = ref.reshape(n, -1), got.reshape(n, -1)
    with np.errstate(invalid="ignore"):
        err = np.abs(got2 - ref2)
    err = np.where(np.isnan(err), np.inf, err)
    ulps = ulp_distance(got2, ref2)
    ok = tolerance.allows(got2, ref2).all(axis=1)
    row_err, row_ulps = err.max(axis=1), ulps.max(axis=1)
    worst = np.argmax(err, axis=1)
    findings = [
        Finding(int(i), float(got2[i, worst[i]]), float(ref2[i, worst[i]]), float(row_err[i]),
                int(row_ulps[i]), "value")
        for i in np.flatnonzero(~ok)
    ]
    head = net.head
    agree = n
    near: list[tuple[int, float]] = []
    if head.kind == "binary":
        thr = float(np.dtype(dtype).type(head.threshold))  # the program's own literal
        ref_s, got_s = ref2[:, 0], got2[:, 0]
        same = (ref_s > thr) == (got_s > thr)
        edge = np.abs(ref_s - thr) <= tolerance.bound(ref_s)
        near = [(int(i), float(ref_s[i])) for i in np.flatnonzero(edge)]
        agree = int(same.sum())
        bad = ~same & ~edge
    elif head.kind == "multiclass":
        same = np.argmax(ref2, axis=1) == np.argmax(got2, axis=1)
        top2 = np.sort(ref2, axis=1)[:, -2:]
        edge = (top2[:, 1] - top2[:, 0]) <= tolerance.bound(top2[:, 1])
        near = [(int(i), float(top2[i, 1])) for i in np.flatnonzero(edge)]
        agree = int(same.sum())
        bad = ~same & ~edge
    else:
        bad = np.zeros(n, dtype=bool)
    flagged = {f.index for f in findings}
    for i in np.flatnonzero(bad):
        if int(i) not in flagged:  # a decision flip beyond tolerance is also a value finding
            k = int(worst[i])
            findings.append(Finding(int(i), float(got2[i, k]), float(ref2[i, k]),
                                    float(row_err[i]), int(row_ulps[i]), "decision"))
    findings.sort(key=lambda f: f.index)
    max_err = float(err.max()) if err.size else 0.0
    max_ulps = int(ulps.max()) if ulps.size else 0
    return max_err, max_ulps, agree, tuple(near), tuple(findings)


def verify(
    net: Network,
    program: str | os.PathLike | None = None,
    target: str = "python",
    layout: str = "auto",
    data: str | os.PathLike | None = None,
    count: int = RANDOM_COUNT,
    seed: int = 0,
    model_label: str = "the model",
    dtype: str = "float64",
) -> Report:
    """Run `program` (or `net` compiled for `target` with `layout`) on data and judge it."""
    inputs = load_inputs(data, net.input_size, count, seed)
    if program is not None:
        pf = read_program(program)
        if pf.n_inputs != net.input_size:
            raise UsageError(
                f"{pf.path}: the program takes {pf.n_inputs} inputs but {model_label} takes "
                f"{net.input_size}"
            )
        if pf.digest != net.digest():
            raise UsageError(
                f"{pf.path}: the program was compiled from model {pf.digest}, but "
                f"{model_label} is {net.digest()}; compile it again or give its own model"
            )
        got = program_outputs(import_program(pf.path), inputs.x)
        target, label, dtype = pf.target, str(pf.path), pf.dtype
    else:
        got = _compiled_outputs(net, target, layout, inputs.x, dtype)
        label = f"a fresh {target} program ({layout} layout, {dtype})"
    tolerance = tolerance_for(net, target, dtype)
    max_err, max_ulps, agree, near, findings = compare_outputs(
        net, got, inputs.x, tolerance, dtype
    )
    decisions = {"binary": "score > threshold", "multiclass": "argmax"}.get(net.head.kind, "none")
    return Report(
        model_label, label, target, inputs.source, len(inputs.x), tolerance, max_err,
        max_ulps, decisions, agree, near, findings,
    )


def _compiled_outputs(
    net: Network, target: str, layout: str, x: np.ndarray, dtype: str = "float64"
) -> np.ndarray:
    """Compile `net` into a temporary folder (numba's cache needs a real file), run, clean up."""
    from templater.compiler import compile as compile_network
    from templater.fileio import write_atomic

    source = compile_network(net, target, layout, dtype=dtype)
    with tempfile.TemporaryDirectory(prefix="templater-verify-") as folder:
        path = write_atomic(Path(folder) / f"program_{net.digest()}_{target}.py", source)
        return program_outputs(import_program(path), x)
