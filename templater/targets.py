"""Targets: Python and Numba as records of strings, read by one emitter and one set of templates."""

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
)

TARGETS = {t.name: t for t in (PYTHON, NUMBA)}


def get_target(name: str, dtype: str = "float64") -> Target:
    try:
        target = TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None
    if dtype == "float64":
        return target
    if dtype != "float32":
        raise UsageError(f"unknown dtype {dtype!r}; choose float64 or float32")
    if name != "numba":
        raise UsageError(
            f"the {name} target has no float32 (Python floats are float64); "
            "use --target numba for --dtype float32"
        )
    return NUMBA32
