"""Targets: Python and Numba as records of strings, read by one emitter and one set of templates."""

from __future__ import annotations

from dataclasses import dataclass

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
    functions=(("exp", "math.exp"), ("sqrt", "math.sqrt"), ("tanh", "math.tanh")),
    table_open="np.array(",
    table_close=")",
    unroll_budget=512,
)

TARGETS = {t.name: t for t in (PYTHON, NUMBA)}


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}") from None
