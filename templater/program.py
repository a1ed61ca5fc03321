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
    opens: int = 0  # the number of the layer whose statements follow (0: none)


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
    role: str = ""  # what a program form looks for: INPUT_MAJOR, ROWS, ACTIVATE or ""


# Loop roles (For.role): a table layer's input-major pass, a block's loop over its rows, and a
# table layer's activation loop.
INPUT_MAJOR = "input-major"
ROWS = "rows"
ACTIVATE = "activate"


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
class LayerInfo:
    """One step of the network as a program computes it, read back by diff and verify.

    The emitter writes each as one dict of literals in the program's LAYERS constant, so a reader
    needs no comment and no naming convention: the names of the tables, vectors and variables
    that hold a layer's weights and values are listed here. `kind` is "normalize" (the window
    normalisation: `eps`, writes `output`) or "dense"; other kinds add their own fields (a
    convolution: channels, kernel, stride, padding) without changing these.
    """

    kind: str
    layer: int = 0  # 1, 2, ... for layers; 0 for the normalisation
    n_inputs: int = 0
    n_outputs: int = 0
    activation: str = ""
    params: tuple[tuple[str, float], ...] = ()  # the activation's alpha/beta
    layout: str = ""  # unrolled or table
    reads: str | tuple[str, ...] = ""  # an input vector, or the previous layer's variables
    output: str | tuple[str, ...] = ""  # the vector or variables holding the outputs
    weights: str = ""  # table layout: the weights table (n_inputs, n_outputs) ...
    bias: str = ""  # ... and the bias table
    columns: tuple[int, ...] = ()  # table layout: unit held by each column, if reordered
    sums: tuple[str, ...] = ()  # unrolled layout: each unit's sum variable
    function: str = ""  # unrolled layout: the function whose statements compute the sums
    eps: float | None = None  # normalize: the epsilon added to the standard deviation

    def literal(self) -> dict[str, object]:
        """The record as a dict of literals, without the fields this kind leaves empty."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            empty = value is None or (isinstance(value, (str, tuple)) and not value)
            if not empty and not (isinstance(value, int) and value == 0):
                out[name] = dict(value) if name == "params" else value
        return out


@dataclass(frozen=True)
class Program:
    """Tables plus one kernel: `kernel(x)` returning the score, or `kernel(x, out)` filling out."""

    tables: tuple[Table, ...]
    body: tuple[Stmt, ...]
    n_inputs: int
    n_outputs: int
    uses: tuple[str, ...] = field(default=())  # math functions the body calls, sorted
    layers: tuple[LayerInfo, ...] = field(default=())  # what the body computes, as data

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
