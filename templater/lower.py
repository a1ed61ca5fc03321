"""Lowering: Network -> Program, each layer either unrolled into statements or a literal table.

Both layouts keep the reference summation order (bias first, then input 0, 1, ...), so both are
exact. `unrolled` writes one statement block per neuron with one weighted term per line (sums are
cut into chunks so no expression grows past what CPython and numba handle well); `table` writes the
layer's weights as a literal table plus an input-major loop, which numba compiles in well under a
second at any size while unrolled code costs it milliseconds per multiply-add.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

from templater.errors import UsageError
from templater.network import STAT_LANES, Activation, Dense, Network, combine_lanes
from templater.program import (
    Alloc,
    Assign,
    BinOp,
    Call,
    Comment,
    Compare,
    Const,
    Do,
    Expr,
    For,
    If,
    Load,
    Neg,
    Program,
    Return,
    Stmt,
    Sum,
    Table,
    Var,
    expressions,
    walk,
)

LAYOUTS = ("auto", "unrolled", "table")
# Terms per statement in an unrolled sum: CPython fails on one expression of ~3,000 terms.
MAX_TERMS = 64
# Inputs a table layer adds per pass over its neurons (measured: 8 beats 1 and 4).
INPUTS_PER_PASS = 8
# Rows the batch and scan kernel scores per pass: each weight it loads serves BLOCK rows.
BLOCK = 4
# The shortest step of a staged scan: units it adds before it checks its bound again.
STAGE_UNITS = 8


@dataclass(frozen=True)
class _Values:
    """A layer's inputs: one expression per input, and the vector holding them, if there is one."""

    exprs: tuple[Expr, ...]
    vector: str | None


def choose_layouts(
    net: Network, layout: str | tuple[str, ...], unroll_budget: int
) -> tuple[str, ...]:
    """One layout per layer. `auto` unrolls the smallest layers while their multiply-adds fit
    in `unroll_budget` (the target's compile budget) and writes the rest as tables. A tuple
    gives each layer's layout explicitly (as `diff` does to match a committed program)."""
    if isinstance(layout, tuple):
        if len(layout) != len(net.layers) or not set(layout) <= {"unrolled", "table"}:
            raise UsageError(
                f"per-layer layouts must be 'unrolled' or 'table', one for each of the "
                f"{len(net.layers)} layers; got {layout!r}"
            )
        return layout
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if layout != "auto":
        return tuple(layout for _ in net.layers)
    chosen = ["table"] * len(net.layers)
    spent = 0
    for index in sorted(range(len(net.layers)), key=lambda k: net.layers[k].weights.size):
        cost = net.layers[index].weights.size
        if spent + cost > unroll_budget:
            break
        spent += cost
        chosen[index] = "unrolled"
    return tuple(chosen)


def lower(
    net: Network, layouts: tuple[str, ...], first_order: tuple[int, ...] | None = None
) -> Program:
    """The Program computing `net.forward` for one input vector `x`.

    `first_order` (a table first layer only) lists the first layer's units in the order its
    table's columns hold them; each unit's sum and the next layer's order stay as they are."""
    body: list[Stmt] = []
    n = net.input_size
    values = _Values(tuple(Load("x", (i,)) for i in range(n)), "x")
    if net.normalization.kind == "window":
        body.extend(_window_normalization(n, net.normalization.eps))
        values = _Values(tuple(Load("xn", (i,)) for i in range(n)), "xn")
    tables: list[Table] = []
    for number, (layer, layout) in enumerate(zip(net.layers, layouts, strict=True), start=1):
        body.append(
            Comment(
                f"layer {number}: dense {layer.n_inputs} -> {layer.n_outputs}, "
                f"{_describe(layer.activation)}, {layout}"
            )
        )
        if layout == "unrolled":
            stmts, values = _unrolled_layer(number, layer, values)
        else:
            order = first_order if number == 1 else None
            stmts, values, new_tables = _table_layer(number, layer, values, order)
            tables.extend(new_tables)
        body.extend(stmts)
    body.append(Comment("outputs"))
    if net.n_outputs == 1:
        body.append(Return(values.exprs[0]))
    else:
        body.extend(Assign(Load("out", (k,)), e) for k, e in enumerate(values.exprs))
    return Program(
        tables=tuple(tables),
        body=tuple(body),
        n_inputs=n,
        n_outputs=net.n_outputs,
        uses=functions_used(tuple(body)),
    )


def functions_used(body: tuple[Stmt, ...]) -> tuple[str, ...]:
    found = set()
    for stmt in walk(body):
        roots: tuple[Expr, ...] = ()
        if isinstance(stmt, Assign):
            roots = (stmt.value,)
        elif isinstance(stmt, If):
            roots = (stmt.test,)
        elif isinstance(stmt, Return):
            roots = (stmt.value,)
        for root in roots:
            found.update(e.func for e in expressions(root) if isinstance(e, Call))
    return tuple(sorted(found))


def neuron_name(layer: int, kind: str, index: int, width: int) -> str:
    """`l1_s03`: layer 1, pre-activation sum (s) or activation (h) of neuron 3, zero-padded."""
    digits = len(str(max(width - 1, 0)))
    return f"l{layer}_{kind}{index:0{digits}d}"


# -- layers -----------------------------------------------------------------------------------


def _unrolled_layer(number: int, layer: Dense, values: _Values) -> tuple[list[Stmt], _Values]:
    stmts: list[Stmt] = []
    outputs: list[Expr] = []
    width = layer.n_outputs
    act = layer.activation
    for j in range(width):
        h = neuron_name(number, "h", j, width)
        s = h if act.name in ("identity", "softmax") else neuron_name(number, "s", j, width)
        terms: list[Expr] = [Const(float(layer.bias[j]))]
        terms.extend(
            BinOp("*", Const(float(layer.weights[i, j])), values.exprs[i])
            for i in range(layer.n_inputs)
        )
        stmts.extend(_bounded_sum(s, terms))
        if act.name not in ("identity", "softmax"):
            temp = neuron_name(number, "e", j, width)
            stmts.extend(activation_stmts(act, Var(s), Var(h), temp))
        outputs.append(Var(h))
    if act.name == "softmax":
        stmts.extend(_softmax(number, tuple(outputs)))
        outputs = [Var(neuron_name(number, "p", j, width)) for j in range(width)]
    return stmts, _Values(tuple(outputs), None)


def _table_layer(
    number: int, layer: Dense, values: _Values, order: tuple[int, ...] | None = None
) -> tuple[list[Stmt], _Values, list[Table]]:
    stmts: list[Stmt] = []
    vector = values.vector
    if vector is None:  # the previous layer was unrolled: gather its scalars into a vector
        vector = f"l{number - 1}_v"
        stmts.append(Alloc(vector, len(values.exprs)))
        stmts.extend(Assign(Load(vector, (i,)), e) for i, e in enumerate(values.exprs))
    w_name, b_name = f"L{number}_W", f"L{number}_B"
    columns = list(order) if order is not None else list(range(layer.n_outputs))
    if sorted(columns) != list(range(layer.n_outputs)):
        raise ValueError(f"not an order of the layer's {layer.n_outputs} units: {order!r}")
    held = f"0..{layer.n_outputs - 1}" if order is None else "u for the units u of STAGED_UNITS"
    tables = [
        Table(
            w_name,
            layer.weights.shape,
            tuple(layer.weights[:, columns].ravel().tolist()),
            f"layer {number} weights: row i holds w[i, {held}]",
        ),
        Table(
            b_name,
            layer.bias.shape,
            tuple(layer.bias[columns].tolist()),
            f"layer {number} biases" + ("" if order is None else ", in the same order"),
        ),
    ]
    act = layer.activation
    plain = act.name in ("identity", "softmax")
    s = f"l{number}_h" if plain else f"l{number}_s"
    n_out = layer.n_outputs
    stmts.append(Alloc(s, n_out))
    stmts.append(For("j", 0, n_out, (Assign(Load(s, ("j",)), Load(b_name, ("j",))),)))
    stmts.extend(_input_major(s, w_name, vector, layer.n_inputs, n_out))
    h = f"l{number}_h"
    if not plain:
        stmts.append(Alloc(h, n_out))
        stmts.append(
            For("j", 0, n_out, activation_stmts(act, Load(s, ("j",)), Load(h, ("j",)), "e"))
        )
    column_of = {unit: k for k, unit in enumerate(columns)}
    outputs: tuple[Expr, ...] = tuple(Load(h, (column_of[j],)) for j in range(n_out))
    if act.name == "softmax":
        stmts.extend(_softmax(number, outputs))
        return (
            stmts,
            _Values(tuple(Var(neuron_name(number, "p", j, n_out)) for j in range(n_out)), None),
            tables,
        )
    return stmts, _Values(outputs, h), tables


def _input_major(s: str, w_name: str, vector: str, n_in: int, n_out: int) -> list[Stmt]:
    """`s[j] += W[i, j] * v[i]` for i = 0, 1, ... in order: exact, and vectorised across neurons.

    Each pass over the neurons adds INPUTS_PER_PASS inputs (left to right, so the order is
    unchanged), which cuts the loads and stores of `s` that otherwise bound the loop.
    """
    step = INPUTS_PER_PASS
    blocked = n_in - n_in % step

    def update(offsets: range) -> For:
        terms = [
            BinOp("*", Load(w_name, (_offset("i", k), "j")), Var(f"xi{k}")) for k in offsets
        ]
        return For("j", 0, n_out, (Assign(Load(s, ("j",)), Sum((Load(s, ("j",)), *terms))),))

    stmts: list[Stmt] = []
    if blocked:
        loads = [Assign(Var(f"xi{k}"), Load(vector, (_offset("i", k),))) for k in range(step)]
        stmts.append(For("i", 0, blocked, (*loads, update(range(step))), step=step))
    if blocked < n_in:
        tail = (Assign(Var("xi0"), Load(vector, ("i",))), update(range(1)))
        stmts.append(For("i", blocked, n_in, tail))
    return stmts


def _offset(var: str, k: int) -> str:
    return var if k == 0 else f"{var} + {k}"


def _bounded_sum(name: str, terms: list[Expr]) -> list[Stmt]:
    """`name = t0 + t1 + ...` cut into statements of at most MAX_TERMS terms, same order."""
    stmts: list[Stmt] = [Assign(Var(name), Sum(tuple(terms[:MAX_TERMS])))]
    for start in range(MAX_TERMS, len(terms), MAX_TERMS - 1):
        chunk = terms[start : start + MAX_TERMS - 1]
        stmts.append(Assign(Var(name), Sum((Var(name), *chunk))))
    return stmts


# -- activations ------------------------------------------------------------------------------


def activation_stmts(act: Activation, src: Expr, dst: Var | Load, temp: str) -> tuple[Stmt, ...]:
    """`dst = act(src)` as statements; each ReLU-like activation is an if/else.

    Mirrors Activation.apply operation for operation (NaN goes to the else branch).
    """
    name = act.name
    zero, one = Const(0.0), Const(1.0)
    if name == "identity":
        return (Assign(dst, src),)
    if name == "relu":
        return (If(Compare(">", src, zero), (Assign(dst, src),), (Assign(dst, zero),)),)
    if name == "leaky_relu":
        return (
            If(
                Compare(">", src, zero),
                (Assign(dst, src),),
                (Assign(dst, BinOp("*", Const(act.alpha), src)),),
            ),
        )
    if name == "step":
        return (If(Compare(">", src, zero), (Assign(dst, one),), (Assign(dst, zero),)),)
    if name == "clip":
        lo, hi = Const(act.alpha), Const(act.beta)
        return (
            If(
                Compare("<", src, lo),
                (Assign(dst, lo),),
                (If(Compare(">", src, hi), (Assign(dst, hi),), (Assign(dst, src),)),),
            ),
        )
    if name == "hard_sigmoid":
        t = Var(temp)
        return (
            Assign(t, BinOp("+", BinOp("*", Const(act.alpha), src), Const(act.beta))),
            If(
                Compare("<", t, zero),
                (Assign(dst, zero),),
                (If(Compare(">", t, one), (Assign(dst, one),), (Assign(dst, t),)),),
            ),
        )
    if name == "sigmoid":
        e = Var(temp)  # exp of a non-positive number only: never overflows
        return (
            If(
                Compare(">=", src, zero),
                (
                    Assign(e, Call("exp", (Neg(src),))),
                    Assign(dst, BinOp("/", one, BinOp("+", one, e))),
                ),
                (
                    Assign(e, Call("exp", (src,))),
                    Assign(dst, BinOp("/", e, BinOp("+", one, e))),
                ),
            ),
        )
    if name == "tanh":
        return (Assign(dst, Call("tanh", (src,))),)
    raise AssertionError(f"activation {name} has no scalar form")  # softmax is a vector op


def _softmax(number: int, inputs: tuple[Expr, ...]) -> list[Stmt]:
    """p_j = exp(h_j - max h) / sum_k exp(h_k - max h), the sum taken left to right."""
    width = len(inputs)
    top = Var(f"l{number}_max")
    stmts: list[Stmt] = [Assign(top, inputs[0])]
    stmts.extend(If(Compare(">", e, top), (Assign(top, e),)) for e in inputs[1:])
    exps = [Var(neuron_name(number, "e", j, width)) for j in range(width)]
    stmts.extend(
        Assign(e, Call("exp", (BinOp("-", h, top),))) for e, h in zip(exps, inputs, strict=True)
    )
    total = Var(f"l{number}_total")
    stmts.extend(_bounded_sum(total.name, list(exps)))
    stmts.extend(
        Assign(Var(neuron_name(number, "p", j, width)), BinOp("/", e, total))
        for j, e in enumerate(exps)
    )
    return stmts


def _window_normalization(n: int, eps: float) -> list[Stmt]:
    """xn = (x - mean) * (1 / (std + eps)), with both sums in the reference's lanes (lane_sum)."""
    x, xn = (lambda i: Load("x", (i,))), (lambda i: Load("xn", (i,)))
    total, mean, squares, d, scale, inv = (
        Var(v) for v in ("total", "mean", "squares", "d", "scale", "inv")
    )
    count = Const(float(n))
    whole = n - n % STAT_LANES
    lanes = [Var(f"t{k}") for k in range(STAT_LANES)]
    deltas = [Var(f"d{k}") for k in range(STAT_LANES)]

    def lane_sum(into: Var, group: list[Stmt], term: Callable[[int], Expr], rest: list[Stmt]):
        """`into` = the lanes' sum of term(k) over whole groups, then `rest` for the leftovers."""
        if not whole:
            return [Assign(into, Const(0.0)), *rest]
        adds = [Assign(t, BinOp("+", t, term(k))) for k, t in enumerate(lanes)]
        return [
            *(Assign(t, Const(0.0)) for t in lanes),
            For("i", 0, whole, (*group, *adds), step=STAT_LANES),
            Assign(into, combine_lanes(list(lanes), lambda a, b: BinOp("+", a, b))),
            *rest,
        ]

    def leftovers(body: Callable[[], list[Stmt]]) -> list[Stmt]:
        return [For("i", whole, n, tuple(body()))] if whole < n else []

    return [
        Comment(
            "input normalisation: each window to zero mean, unit variance, "
            f"sums in {STAT_LANES} lanes (eps {eps!r})"
        ),
        Alloc("xn", n),
        *lane_sum(
            total,
            [],
            lambda k: x(_offset("i", k)),
            leftovers(lambda: [Assign(total, BinOp("+", total, x("i")))]),
        ),
        Assign(mean, BinOp("/", total, count)),
        *lane_sum(
            squares,
            [
                *(Assign(dk, BinOp("-", x(_offset("i", k)), mean)) for k, dk in enumerate(deltas)),
                *(Assign(xn(_offset("i", k)), dk) for k, dk in enumerate(deltas)),
            ],
            lambda k: BinOp("*", deltas[k], deltas[k]),
            leftovers(
                lambda: [
                    Assign(d, BinOp("-", x("i"), mean)),
                    Assign(xn("i"), d),
                    Assign(squares, BinOp("+", squares, BinOp("*", d, d))),
                ]
            ),
        ),
        Assign(scale, BinOp("+", Call("sqrt", (BinOp("/", squares, count),)), Const(eps))),
        Assign(inv, BinOp("/", Const(1.0), scale)),
        For("i", 0, n, (Assign(xn("i"), BinOp("*", xn("i"), inv)),)),
    ]


def _describe(act: Activation) -> str:
    params = [f"{k}={getattr(act, k)!r}" for k in ("alpha", "beta") if getattr(act, k) is not None]
    return f"{act.name}({', '.join(params)})" if params else act.name


# -- the block form: BLOCK rows per pass ------------------------------------------------------


def split_tail(
    program: Program, layouts: tuple[str, ...], normalized: bool
) -> tuple[Program, tuple[Stmt, ...], str]:
    """Move the trailing unrolled layers into a function of their input vector.

    A Numba program has two kernels (one row; a block of rows); both call the tail, so each
    unrolled literal is written once. Returns (the program calling the tail, the tail's body, the
    name of its input vector, which is also its parameter); an empty tail when the last layer
    is a table.
    """
    if not layouts or layouts[-1] != "unrolled":
        return program, (), ""
    first = len(layouts)
    while first > 1 and layouts[first - 2] == "unrolled":
        first -= 1
    marker = f"layer {first}: "
    start = next(
        k
        for k, stmt in enumerate(program.body)
        if isinstance(stmt, Comment) and stmt.text.startswith(marker)
    )
    vector = f"l{first - 1}_h" if first > 1 else ("xn" if normalized else "x")
    tail = program.body[start:]
    if program.returns_scalar:
        call: Stmt = Return(Call("tail", (Load(vector, ()),)))
    else:
        call = Do(Call("tail", (Load(vector, ()), Load("out", ()))))
    head = replace(program, body=(*program.body[:start], Comment("the unrolled layers"), call))
    return head, tail, vector


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
            body.append(For("b", 0, block, tuple(group)))
            group.clear()

    for stmt in program.body:
        if isinstance(stmt, Alloc):
            allocs.append(Alloc(stmt.name, stmt.size, rows=block))
        elif isinstance(stmt, Comment):
            # inside an open row loop: a scalar may live on past the comment
            (group if group else body).append(stmt)
        elif isinstance(stmt, For) and stmt.var == "i" and isinstance(stmt.body[-1], For):
            flush()
            body.append(_input_major_block(stmt, block))
        else:
            group.append(_rowwise(stmt, tables))
    flush()
    return tuple(allocs), tuple(body)


def _row(array: str, row: int | str) -> str:
    """The row index of `array` in the block form: the input `x` and the output `out` are
    indexed at rows r + b."""
    if array not in ("x", "out"):
        return str(row)
    return "r" if row == 0 else f"r + {row}"


def _rowwise(stmt: Stmt, tables: set[str]) -> Stmt:
    """`stmt` for row `b` of the block: vectors gain the row index, `return v` writes out."""

    def ex(e: Expr) -> Expr:
        if isinstance(e, Load):
            return e if e.array in tables else Load(e.array, (_row(e.array, "b"), *e.index))
        if isinstance(e, BinOp):
            return BinOp(e.op, ex(e.left), ex(e.right))
        if isinstance(e, Compare):
            return Compare(e.op, ex(e.left), ex(e.right))
        if isinstance(e, Neg):
            return Neg(ex(e.operand))
        if isinstance(e, Sum):
            return Sum(tuple(ex(t) for t in e.terms))
        if isinstance(e, Call):
            return Call(e.func, tuple(ex(a) for a in e.args))
        return e

    def st(s: Stmt) -> Stmt:
        if isinstance(s, Assign):
            target = s.target
            if isinstance(target, Load) and target.array == "out":
                target = Load("out", ("r + b", *target.index))
            elif isinstance(target, Load):
                target = Load(target.array, ("b", *target.index))
            return Assign(target, ex(s.value))
        if isinstance(s, If):
            test = ex(s.test)
            assert isinstance(test, Compare)
            return If(test, tuple(st(t) for t in s.body), tuple(st(t) for t in s.orelse))
        if isinstance(s, For):
            return For(s.var, s.start, s.stop, tuple(st(t) for t in s.body), s.step)
        if isinstance(s, Return):
            return Assign(Load("out", ("r + b",)), ex(s.value))
        if isinstance(s, Comment):
            return s
        if isinstance(s, Do):
            call = ex(s.call)
            assert isinstance(call, Call)
            return Do(call)
        raise TypeError(f"no block form for statement {type(s).__name__}")

    return st(stmt)


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
            Assign(Var(f"x{b}_{k}"), Load(v.array, (_row(v.array, b), *v.index)))
            for k, v in enumerate(inputs)
        )
    weights: list[Stmt] = []
    for k, term in enumerate(terms):
        assert isinstance(term, BinOp) and isinstance(term.left, Load)
        weights.append(Assign(Var(f"w{k}"), term.left))
    sums: list[Stmt] = []
    for b in range(block):
        acc = Load(s, (b, "j"))
        products = (BinOp("*", Var(f"w{k}"), Var(f"x{b}_{k}")) for k in range(len(terms)))
        sums.append(Assign(acc, Sum((acc, *products))))
    body = (*head, For("j", inner.start, inner.stop, (*weights, *sums), inner.step))
    return For(loop.var, loop.start, loop.stop, body, loop.step)


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
    first = next(k for k, s in enumerate(body) if isinstance(s, For) and s.var == "i")
    loops = [s for s in body[first:-1] if isinstance(s, For) and s.var == "i"]
    last = body[-1]
    assert len(loops) == len(body) - 1 - first and isinstance(last, For) and last.var == "b"
    relu, *_, score = last.body
    assert isinstance(relu, For) and relu.var == "j" and isinstance(score, Assign)

    def columns(start: int | str, stop: int | str) -> tuple[Stmt, ...]:
        stage: list[Stmt] = []
        for loop in loops:
            *head, inner = loop.body
            assert isinstance(inner, For) and inner.var == "j"
            stage.append(replace(loop, body=(*head, replace(inner, start=start, stop=stop))))
        stage.append(replace(last, body=(replace(relu, start=start, stop=stop),)))
        return tuple(stage)

    return body[:first], columns, score
