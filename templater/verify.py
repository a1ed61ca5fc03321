"""Verifying: run a generated program on data and judge it against the numpy reference.

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

import ast
import os
import re
import tempfile
import types
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import (
    MalformedModelError,
    TemplaterError,
    TooLargeError,
    UnsafeInputError,
    UsageError,
)
from templater.network import TRANSCENDENTAL, Network
from templater.programs import import_program

# Worst errors measured on 625-16-16-k sigmoid, tanh and softmax models (both targets, with and
# without window normalisation, 2,000 random inputs) were 1e-16 to 6e-15; the bound keeps a wide
# margin and still catches any edited digit that matters for a decision.
RTOL = 1e-9
ATOL = 1e-9
# float32 programs with exp/tanh, against the float32 reference (tests/test_float32.py).
RTOL32 = 1e-5
ATOL32 = 1e-6
# Random inputs: the range of the face windows' pixels.
RANDOM_RANGE = (0.0, 1.0)
RANDOM_COUNT = 1000
MAX_DATA_ROWS = 10_000_000
FACE_WIDTH = 625
# Data specs besides a .npy path.
DATA_SPECS = ("auto", "faces", "random")


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


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Inputs:
    """Rows to run (float64, n x width) and a description of where they came from."""

    x: np.ndarray
    source: str
    images: bool  # rows are face windows (25x25 pixels in [0, 1])


@cache
def face_test_split() -> np.ndarray:
    """The windows of the default training run's held-out test split (read-only)."""
    from templater.train import TrainConfig, prepare

    test = prepare(TrainConfig())[2]
    out = np.array(test.x, dtype=np.float64)
    out.setflags(write=False)
    return out


def load_inputs(
    spec: str | os.PathLike | None, n_inputs: int, count: int = RANDOM_COUNT, seed: int = 0
) -> Inputs:
    """`faces` (the face test split), `random` (uniform in RANDOM_RANGE), a .npy file of rows,
    or `auto`/None: the faces when the model takes 625 inputs, else random."""
    spec = "auto" if spec is None else spec
    if spec == "auto":
        spec = "faces" if n_inputs == FACE_WIDTH else "random"
    if spec == "faces":
        if n_inputs != FACE_WIDTH:
            raise UsageError(
                f"the face test split has rows of {FACE_WIDTH} pixels but the model takes "
                f"{n_inputs} inputs; give --data FILE.npy or --data random"
            )
        x = face_test_split()
        return Inputs(x, f"the face test split ({len(x)} windows)", True)
    if spec == "random":
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"random inputs: need a positive count, not {count!r}")
        rng = np.random.default_rng(seed)
        low, high = RANDOM_RANGE
        x = rng.uniform(low, high, size=(count, n_inputs))
        source = f"{count} random inputs uniform in [{low:g}, {high:g}] (seed {seed})"
        return Inputs(x, source, False)
    return Inputs(load_npy(spec, n_inputs), f"{spec}", False)


def load_npy(path: str | os.PathLike, n_inputs: int) -> np.ndarray:
    """Rows from a .npy file: never unpickled, sizes checked from the header before reading."""
    path = Path(path)
    if path.suffix != ".npy":
        raise UsageError(
            f"{path}: expected a .npy file of rows (or one of: {', '.join(DATA_SPECS)})"
        )
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (ValueError, EOFError) as exc:
        raise MalformedModelError(f"{path}: file is truncated or not a .npy file ({exc})") from exc
    if dtype.hasobject:
        raise UnsafeInputError(
            f"{path}: holds Python objects (a pickle); templater never unpickles"
        )
    if dtype.kind not in "fiu":
        raise UsageError(f"{path}: expected numbers (float or int), found dtype {dtype}")
    if len(shape) not in (1, 2):
        raise UsageError(f"{path}: expected a 2-D array of rows, found shape {shape}")
    rows = shape[0] if len(shape) == 2 else 1
    width = shape[-1]
    if width != n_inputs:
        raise UsageError(
            f"{path}: expected rows of {n_inputs} numbers (the model's inputs), "
            f"found shape {shape}"
        )
    if rows > MAX_DATA_ROWS:
        raise TooLargeError(f"{path}: {rows:,} rows; the limit is {MAX_DATA_ROWS:,}")
    if rows == 0:
        raise UsageError(f"{path}: holds no rows (shape {shape})")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise MalformedModelError(f"{path}: file is truncated or not a .npy file ({exc})") from exc
    x = np.atleast_2d(np.asarray(arr, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise UsageError(
            f"{path}: {bad.size} row(s) hold NaN or infinity, first row {int(bad[0])}; "
            "programs take finite inputs"
        )
    return x


# -- program files ----------------------------------------------------------------------------

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
)
_LAYOUTS_LINE = re.compile(r"^Layer layouts: ([a-z, ]+)\.", re.MULTILINE)


@dataclass(frozen=True, eq=False)
class ProgramFile:
    """A generated program read as text and AST (never executed): its header and shape."""

    path: Path
    text: str
    tree: ast.Module
    constants: dict[str, Any]
    target: str
    layouts: tuple[str, ...]
    head: str  # binary, multiclass or regression (from the entry points it defines)

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
    if missing or "_kernel" not in functions or "score_batch" not in functions:
        what = ", ".join(missing) if missing else "_kernel/score_batch"
        raise MalformedModelError(
            f"{path}: not a templater program (expected the generated header and entry points; "
            f"missing {what})"
        )
    n = constants["N_INPUTS"]
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise MalformedModelError(f"{path}: N_INPUTS must be a positive integer, found {n!r}")
    found = _LAYOUTS_LINE.search(ast.get_docstring(tree) or "")
    layouts = tuple(s.strip() for s in found.group(1).split(",")) if found else ()
    head = "binary" if "decide" in functions else "multiclass" if "predict" in functions else (
        "regression"
    )
    return ProgramFile(path, text, tree, constants, target, layouts, head)


def program_outputs(module: types.ModuleType, x: np.ndarray) -> np.ndarray:
    """The program's outputs for each row: (n,) for one output, (n, k) for several."""
    # A writable copy: numba entry points with explicit signatures refuse read-only arrays.
    rows = np.array(x, dtype=np.float64, order="C")
    return np.asarray(module.score_batch(rows), dtype=np.float64)


# -- verification -----------------------------------------------------------------------------


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
