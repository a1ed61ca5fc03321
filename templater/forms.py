"""Program forms: the shapes a Numba program gives the lowered Program besides its one-row kernel.

- the shared tail: the trailing unrolled layers move into one function both kernels call;
- the block form: BLOCK rows per pass, each weight loaded once for all of them;
- the staged form: a face scan adds the first layer's units in stages and stops a block once no
  row can pass the threshold.

Every form keeps each row's summation order, so each is exact. A form finds what it rewrites by
the IR's own marks (`Comment.opens`, `For.role`), never by a comment's text or a variable name.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from templater import naming
from templater.network import Network
from templater.program import (
    ACTIVATE,
    INPUT_MAJOR,
    ROWS,
    Alloc,
    Assign,
    BinOp,
    Call,
    Comment,
    Do,
    For,
    Load,
    Program,
    Return,
    Stmt,
    Sum,
    Var,
)
from templater.transform import Transformer

# Rows the batch and scan kernel scores per pass: each weight it loads serves BLOCK rows.
BLOCK = 4
# The shortest step of a staged scan: units it adds before it checks its bound again.
STAGE_UNITS = 8


# -- the shared tail --------------------------------------------------------------------------


def split_tail(program: Program) -> tuple[Program, tuple[Stmt, ...], str]:
    """Move the trailing unrolled layers into a function of their input vector.

    A Numba program has two kernels (one row; a block of rows); both call the tail, so each
    unrolled literal is written once. Returns (the program calling the tail, the tail's body, the
    name of its input vector, which is also its parameter); an empty tail when the last layer
    is a table.
    """
    dense = [info for info in program.layers if info.kind == "dense"]
    if not dense or dense[-1].layout != "unrolled":
        return program, (), ""
    first = len(dense)
    while first > 1 and dense[first - 2].layout == "unrolled":
        first -= 1
    start = next(
        k
        for k, stmt in enumerate(program.body)
        if isinstance(stmt, Comment) and stmt.opens == first
    )
    vector = dense[first - 1].reads
    assert isinstance(vector, str), "a tail reads a vector: the input or a table layer's output"
    tail = program.body[start:]
    if program.returns_scalar:
        call: Stmt = Return(Call("tail", (Load(vector, ()),)))
    else:
        call = Do(Call("tail", (Load(vector, ()), Load(naming.OUTPUT, ()))))
    layers = tuple(
        replace(info, function=naming.TAIL) if info.kind == "dense" and info.layer >= first
        else info
        for info in program.layers
    )
    body = (*program.body[:start], Comment("the unrolled layers"), call)
    return replace(program, body=body, layers=layers), tail, vector


# -- the block form: BLOCK rows per pass ------------------------------------------------------


def block_program(
    program: Program, block: int = BLOCK
) -> tuple[tuple[Stmt, ...], tuple[Stmt, ...]]:
    """`program` for `block` rows at once: (its scratch allocations, one pass's statements).

    A pass reads rows `r`, `r + 1`, ..., `r + block - 1` of the 2-D input `x` and writes
    `out[r + b]` (or `out[r + b, k]`). Row-wise statements run in a loop over `b`, each
    vector gaining a leading row index; a table layer's input-major loop loads each weight once
    for all the rows. Every row keeps the single-row summation order, so the form is exact.
    """
    tables = {t.name for t in program.tables}
    allocs: list[Stmt] = []
    body: list[Stmt] = []
    group: list[Stmt] = []

    def flush() -> None:
        if group:
            body.append(For("b", 0, block, tuple(group), role=ROWS))
            group.clear()

    for stmt in program.body:
        if isinstance(stmt, Alloc):
            allocs.append(Alloc(stmt.name, stmt.size, rows=block))
        elif isinstance(stmt, Comment):
            # inside an open row loop: a scalar may live on past the comment
            (group if group else body).append(stmt)
        elif isinstance(stmt, For) and stmt.role == INPUT_MAJOR:
            flush()
            body.append(_input_major_block(stmt, block))
        else:
            group.append(_rowwise(stmt, tables))
    flush()
    return tuple(allocs), tuple(body)


def _row(array: str, row: int | str) -> str:
    """The row index of `array` in the block form: the input `x` and the output `out` are
    indexed at rows r + b."""
    if array not in (naming.INPUT, naming.OUTPUT):
        return str(row)
    return "r" if row == 0 else f"r + {row}"


def _rowwise(stmt: Stmt, tables: set[str]) -> Stmt:
    """`stmt` for row `b` of the block: vectors gain the row index, `return v` writes out."""
    new = _RowWise(tables).statement(stmt)
    assert not isinstance(new, tuple)
    return new


class _RowWise(Transformer):
    def __init__(self, tables: set[str]):
        self.tables = tables

    def visit_Load(self, e: Load) -> Load:
        if e.array in self.tables:
            return e
        return Load(e.array, (_row(e.array, naming.ROW_INDEX), *e.index))

    def visit_Assign(self, s: Assign) -> Assign:
        target = s.target
        if isinstance(target, Load) and target.array == naming.OUTPUT:
            target = Load(naming.OUTPUT, ("r + b", *target.index))
        elif isinstance(target, Load):
            target = Load(target.array, (naming.ROW_INDEX, *target.index))
        return Assign(target, self.expr(s.value))

    def visit_Return(self, s: Return) -> Assign:
        return Assign(Load(naming.OUTPUT, ("r + b",)), self.expr(s.value))

    def visit_Alloc(self, s: Alloc) -> Alloc:
        raise TypeError("an allocation has no row-wise form (block_program hoists it)")


def _input_major_block(loop: For, block: int) -> For:
    """The input-major loop of `_input_major` for `block` rows: per neuron, each of the pass's
    weights is loaded once into `w0`, `w1`, ... and used for every row."""
    *loads, inner = loop.body
    assert isinstance(inner, For) and len(inner.body) == 1
    update = inner.body[0]
    assert isinstance(update, Assign) and isinstance(update.value, Sum)
    assert isinstance(update.target, Load)
    s = update.target.array
    _, *terms = update.value.terms
    inputs: list[Load] = []
    for load in loads:
        assert isinstance(load, Assign) and isinstance(load.value, Load)
        inputs.append(load.value)
    head: list[Stmt] = []
    for b in range(block):
        head.extend(
            Assign(Var(naming.block_input(b, k)), Load(v.array, (_row(v.array, b), *v.index)))
            for k, v in enumerate(inputs)
        )
    weights: list[Stmt] = []
    for k, term in enumerate(terms):
        assert isinstance(term, BinOp) and isinstance(term.left, Load)
        weights.append(Assign(Var(naming.lane_weight(k)), term.left))
    sums: list[Stmt] = []
    for b in range(block):
        acc = Load(s, (b, "j"))
        products = (
            BinOp("*", Var(naming.lane_weight(k)), Var(naming.block_input(b, k)))
            for k in range(len(terms))
        )
        sums.append(Assign(acc, Sum((acc, *products))))
    body = (*head, replace(inner, body=(*weights, *sums)))
    return replace(loop, body=body)


# -- the staged form: a scan stops scoring a block once no row can pass -----------------------


@dataclass(frozen=True)
class Stages:
    """How a scan scores the first layer in stages (see `staged_block`).

    `order` lists the first layer's units as its table's columns hold them: those of positive
    output weight first (in model order), then the others, strongest first (|output weight| times
    the sum of |input weights|: the likeliest to pull a score down). The first stage scores
    columns 0 to `bound_from` (every positive unit), each later one `step` more.
    """

    order: tuple[int, ...]
    bound_from: int
    step: int


def scan_stages(net: Network, layouts: tuple[str, ...]) -> Stages | None:
    """Stages for a network whose score part of its first layer can bound, else None.

    That takes a ReLU first layer (its outputs are >= 0) written as a table, then one unrolled
    output that is identity or ReLU. The score is then non-decreasing in each hidden unit of
    positive output weight and non-increasing in the others, and so is its float computation
    (rounding is monotone): the score computed with the units not scored yet at 0 is an upper
    bound of the final score, bit for bit, and once it is at most the threshold it stays there.
    Every stage has a length fixed in the source (a loop of 8 iterations known only at run time
    ran the face scan 1.3x slower than no stages at all): the first ends at `bound_from`, the
    others are `step` long, so the first covers the positive units and a few others if needed.
    """
    if len(net.layers) != 2 or tuple(layouts) != ("table", "unrolled"):
        return None
    hidden, output = net.layers
    if (
        hidden.activation.name != "relu"
        or output.n_outputs != 1
        or output.activation.name not in ("identity", "relu")
    ):
        return None
    v = output.weights[:, 0].tolist()
    positive = [j for j, w in enumerate(v) if w > 0.0]
    # wide layers take longer steps: each stage reloads the rows' inputs, and each check costs
    # a score per row (8 units a step measured 1.3x slower batches for 625-128-1 in float32)
    step = max(STAGE_UNITS, len(v) // (8 * STAGE_UNITS) * STAGE_UNITS)
    later = (len(v) - len(positive)) // step * step
    if not later:  # no stage after the positive units: nothing to stop early for
        return None
    # math.fsum: the same strengths, hence the same file, on every machine
    strength = [abs(w) * math.fsum(abs(hidden.weights[:, j])) for j, w in enumerate(v)]
    others = sorted((j for j, w in enumerate(v) if not w > 0.0), key=lambda j: -strength[j])
    return Stages(tuple(positive + others), len(v) - later, step)


def staged_block(
    body: tuple[Stmt, ...],
) -> tuple[tuple[Stmt, ...], Callable[[int | str, int | str], tuple[Stmt, ...]], Stmt]:
    """The block form of a `scan_stages` network cut for a staged kernel.

    Returns (the statements before the first layer's input-major loops; a function giving the
    statements that add the first layer's columns `start` to `stop` and apply the ReLU to them;
    the statement that computes row `b`'s score from the first layer's outputs). The template
    runs the stages and checks the bound after each one.
    """
    first = next(k for k, s in enumerate(body) if isinstance(s, For) and s.role == INPUT_MAJOR)
    loops = [s for s in body[first:-1] if isinstance(s, For) and s.role == INPUT_MAJOR]
    last = body[-1]
    assert len(loops) == len(body) - 1 - first and isinstance(last, For) and last.role == ROWS
    relu, *_, score = last.body
    assert isinstance(relu, For) and relu.role == ACTIVATE and isinstance(score, Assign)

    def columns(start: int | str, stop: int | str) -> tuple[Stmt, ...]:
        stage: list[Stmt] = []
        for loop in loops:
            *head, inner = loop.body
            assert isinstance(inner, For)
            stage.append(replace(loop, body=(*head, replace(inner, start=start, stop=stop))))
        stage.append(replace(last, body=(replace(relu, start=start, stop=stop),)))
        return tuple(stage)

    return body[:first], columns, score
