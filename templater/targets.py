"""Targets: Python and Numba as records, read by one emitter, the compiler and the templates.

Everything that differs between targets is a field here (the file's title and imports, how a
table or a scratch array is written, which kernels the file has): the compiler never branches on
a target's name, and a new target is a new record plus its template.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from templater.errors import UsageError


@dataclass(frozen=True)
class Target:
    name: str
    template: str  # the file skeleton in templater/templates/
    index2: str  # a 2-D table element
    alloc: str  # a scratch vector of floats
    alloc_rows: str  # a scratch (rows, size) array of floats
    functions: tuple[tuple[str, str], ...]  # IR math function -> source name
    table_open: str
    table_close: str
    # `auto` unrolls layers while their multiply-adds fit in this budget. Numba pays ~4 ms of
    # compile time per unrolled multiply-add (ARCHITECTURE.md), CPython about 10 us.
    unroll_budget: int
    title: str = ""  # "the 625-16-1 network as {title}"
    note: str = ""  # what the file needs and how to call it, in its docstring
    imports: str = ""  # the import block ("" for none)
    # The kernels a target writes besides `_kernel`: a tail function both kernels share (the
    # trailing unrolled layers), a block kernel scoring BLOCK rows per pass, and a staged scan
    # kernel for find_faces (forms.scan_stages decides whether a network allows it).
    shared_tail: bool = False
    block_kernel: bool = False
    staged_scan: bool = False
    dtype: str = "float64"  # the float type of every literal, table and operation
    const: str = "{value}"  # a scalar literal in the body (typed, where the target needs it)

    def function(self, name: str) -> str:
        return dict(self.functions)[name]


PYTHON = Target(
    name="python",
    template="python.py.j2",
    index2="{array}[{i}][{j}]",
    alloc="[0.0] * {size}",
    alloc_rows="[[0.0] * {size} for _ in range({rows})]",
    functions=(("exp", "_exp"), ("sqrt", "_sqrt"), ("tanh", "_tanh")),
    table_open="",
    table_close="",
    unroll_budget=250_000,
    title="pure Python",
    note="Pure Python with no imports: copy this one file anywhere.",
)

NUMBA = Target(
    name="numba",
    template="numba.py.j2",
    index2="{array}[{i}, {j}]",
    alloc="np.empty({size})",
    alloc_rows="np.empty(({rows}, {size}))",
    functions=(
        ("exp", "math.exp"),
        ("sqrt", "math.sqrt"),
        ("tanh", "math.tanh"),
        ("tail", "_tail"),  # the trailing unrolled layers, shared by both kernels
    ),
    table_open="np.array(",
    table_close=")",
    unroll_budget=512,
    title="a Numba program",
    note=(
        "Needs only numpy and numba; _kernel is compiled on import, the batch and scan functions\n"
        "on first use (all cached on disk)."
    ),
    imports=(
        "import math\nimport os\nimport sys\nfrom concurrent.futures import ThreadPoolExecutor\n\n"
        "import numpy as np\nfrom numba import njit"
    ),
    shared_tail=True,
    block_kernel=True,
    staged_scan=True,
)

# float32: tables and scratch arrays are float32, and each scalar literal is a float32 call, since
# numba types a bare float literal as float64 and would widen the whole expression to it.
NUMBA32 = replace(
    NUMBA,
    alloc="np.empty({size}, dtype=np.float32)",
    alloc_rows="np.empty(({rows}, {size}), dtype=np.float32)",
    table_close=", dtype=np.float32)",
    dtype="float32",
    const="np.float32({value})",
    title=NUMBA.title + " in float32",
    note=(
        NUMBA.note
        + "\nfloat32: every weight, bias, threshold and parameter below is the float32 nearest to"
        "\nthe trained value, and all arithmetic is float32 (inputs are converted to float32)."
    ),
)

TARGETS = {t.name: t for t in (PYTHON, NUMBA)}
# The float32 variant of each target that has one.
FLOAT32 = {NUMBA.name: NUMBA32}


def get_target(name: str, dtype: str = "float64") -> Target:
    try:
        target = TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None
    if dtype == "float64":
        return target
    if dtype != "float32":
        raise UsageError(f"unknown dtype {dtype!r}; choose float64 or float32")
    if name not in FLOAT32:
        raise UsageError(
            f"the {name} target has no float32 (Python floats are float64); "
            f"use --target {' or '.join(FLOAT32)} for --dtype float32"
        )
    return FLOAT32[name]
