"""Program: the scalar IR a network is lowered to; frozen records with tuple children.

A Program is hole-free: every weight is a `Const` or a row of a `Table`. Passes map Program to
Program; the emitter turns one into lines of source. Names come from structure (`l1_s03`), never
from text in a model file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# -- expressions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Const:
    value: float


@dataclass(frozen=True)
class Var:
    name: str


@dataclass(frozen=True)
class Load:
    """`array[i]` or `array[i, j]` (no index: the whole array); an index is a literal int, the
    name of a loop variable, or a loop variable plus a literal offset (`i + 3`)."""

    array: str
    index: tuple[int | str, ...]


@dataclass(frozen=True)
class BinOp:
    op: str  # one of + - * /
    left: Expr
    right: Expr


@dataclass(frozen=True)
class Neg:
    operand: Expr


@dataclass(frozen=True)
class Sum:
    """terms[0] + terms[1] + ... added left to right (the order is part of the meaning)."""

    terms: tuple[Expr, ...]


@dataclass(frozen=True)
class Call:
    """A math function the target provides: `exp`, `sqrt` or `tanh`."""

    func: str
    args: tuple[Expr, ...]


@dataclass(frozen=True)
class Compare:
    op: str  # one of > >= < <=
    left: Expr
    right: Expr


Expr = Const | Var | Load | BinOp | Neg | Sum | Call | Compare

# -- statements -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comment:
    text: str  # made from structure (layer numbers, sizes), never from model-file text


@dataclass(frozen=True)
class Assign:
    target: Var | Load
    value: Expr


@dataclass(frozen=True)
class If:
    test: Compare
    body: tuple[Stmt, ...]
    orelse: tuple[Stmt, ...] = ()


@dataclass(frozen=True)
class For:
    """`for var in range(start, stop, step)`; a bound may name a variable (a staged kernel's)."""

    var: str
    start: int | str
    stop: int | str
    body: tuple[Stmt, ...]
    step: int = 1


@dataclass(frozen=True)
class Alloc:
    """A scratch vector of `size` floats, or with `rows` a (rows, size) array (contents
    undefined until assigned)."""

    name: str
    size: int
    rows: int = 0


@dataclass(frozen=True)
class Return:
    value: Expr


@dataclass(frozen=True)
class Do:
    """A call made for its effect (it fills an output vector)."""

    call: Call


Stmt = Comment | Assign | If | For | Alloc | Return | Do

# -- the whole program ------------------------------------------------------------------------


@dataclass(frozen=True)
class Table:
    """A literal constant array written in the source: `values` in row-major order."""

    name: str
    shape: tuple[int, ...]
    values: tuple[float, ...]
    comment: str = ""


@dataclass(frozen=True)
class Program:
    """Tables plus one kernel: `kernel(x)` returning the score, or `kernel(x, out)` filling out."""

    tables: tuple[Table, ...]
    body: tuple[Stmt, ...]
    n_inputs: int
    n_outputs: int
    uses: tuple[str, ...] = field(default=())  # math functions the body calls, sorted

    @property
    def returns_scalar(self) -> bool:
        return self.n_outputs == 1


def walk(stmts: tuple[Stmt, ...]):
    """Every statement, depth first, in order."""
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, If):
            yield from walk(stmt.body)
            yield from walk(stmt.orelse)
        elif isinstance(stmt, For):
            yield from walk(stmt.body)


def expressions(expr: Expr):
    """An expression and all its sub-expressions."""
    yield expr
    if isinstance(expr, (BinOp, Compare)):
        yield from expressions(expr.left)
        yield from expressions(expr.right)
    elif isinstance(expr, Neg):
        yield from expressions(expr.operand)
    elif isinstance(expr, (Sum, Call)):
        for child in expr.terms if isinstance(expr, Sum) else expr.args:
            yield from expressions(child)
