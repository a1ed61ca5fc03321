"""Lowering: Network -> Program, each layer either unrolled into statements or a literal table.

Both layouts keep the reference summation order (bias first, then input 0, 1, ...), so both are
exact. `unrolled` writes one statement block per neuron with one weighted term per line (sums are
cut into chunks so no expression grows past what CPython and numba handle well); `table` writes the
layer's weights as a literal table plus an input-major loop, which numba compiles in well under a
second at any size while unrolled code costs it milliseconds per multiply-add.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from templater import naming
from templater.errors import UsageError
from templater.naming import offset as _offset
from templater.network import STAT_LANES, Activation, Dense, Network, combine_lanes
from templater.program import (
    ACTIVATE,
    INPUT_MAJOR,
    Alloc,
    Assign,
    BinOp,
    Call,
    Comment,
    Compare,
    Const,
    Expr,
    For,
    If,
    LayerInfo,
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


@dataclass(frozen=True)
class _Values:
    """A layer's inputs: one expression per input, the vector holding them (if there is one),
    and the variables holding them (an unrolled layer's outputs)."""

    exprs: tuple[Expr, ...]
    vector: str | None
    names: tuple[str, ...] = ()

    @property
    def described(self) -> str | tuple[str, ...]:
        """What a LayerInfo says a layer reads."""
        return self.vector if self.vector is not None else self.names


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
    infos: list[LayerInfo] = []
    n = net.input_size
    x, xn = naming.INPUT, naming.NORMALIZED
    values = _Values(tuple(Load(x, (i,)) for i in range(n)), x)
    if net.normalization.kind == "window":
        body.extend(_window_normalization(n, net.normalization.eps))
        values = _Values(tuple(Load(xn, (i,)) for i in range(n)), xn)
        infos.append(LayerInfo("normalize", reads=x, output=xn, eps=net.normalization.eps))
    tables: list[Table] = []
    for number, (layer, layout) in enumerate(zip(net.layers, layouts, strict=True), start=1):
        body.append(
            Comment(
                f"layer {number}: dense {layer.n_inputs} -> {layer.n_outputs}, "
                f"{_describe(layer.activation)}, {layout}",
                opens=number,
            )
        )
        reads = values.described
        if layout == "unrolled":
            stmts, values, sums = _unrolled_layer(number, layer, values)
            where = {"sums": sums, "function": naming.KERNEL}
        else:
            order = first_order if number == 1 else None
            stmts, values, new_tables = _table_layer(number, layer, values, order)
            tables.extend(new_tables)
            where = {
                "weights": new_tables[0].name,
                "bias": new_tables[1].name,
                "columns": tuple(order) if order is not None else (),
            }
        body.extend(stmts)
        infos.append(_layer_info(number, layer, layout, reads, values, where))
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
        layers=tuple(infos),
    )


def _layer_info(
    number: int, layer: Dense, layout: str, reads: str | tuple[str, ...], values: _Values,
    where: dict,
) -> LayerInfo:
    act = layer.activation
    params = tuple((k, getattr(act, k)) for k in ("alpha", "beta") if getattr(act, k) is not None)
    return LayerInfo(
        "dense", number, layer.n_inputs, layer.n_outputs, act.name, params, layout, reads,
        values.described, **where,
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


neuron_name = naming.neuron


# -- layers -----------------------------------------------------------------------------------


def _unrolled_layer(
    number: int, layer: Dense, values: _Values
) -> tuple[list[Stmt], _Values, tuple[str, ...]]:
    """The layer's statements, its outputs, and the variable each unit's sum is written to."""
    stmts: list[Stmt] = []
    outputs: list[Var] = []
    sums: list[str] = []
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
        sums.append(s)
        if act.name not in ("identity", "softmax"):
            temp = neuron_name(number, "e", j, width)
            stmts.extend(activation_stmts(act, Var(s), Var(h), temp))
        outputs.append(Var(h))
    if act.name == "softmax":
        stmts.extend(_softmax(number, tuple(outputs)))
        outputs = [Var(neuron_name(number, "p", j, width)) for j in range(width)]
    return stmts, _variables(outputs), tuple(sums)


def _variables(outputs: list[Var]) -> _Values:
    return _Values(tuple(outputs), None, tuple(v.name for v in outputs))


def _table_layer(
    number: int, layer: Dense, values: _Values, order: tuple[int, ...] | None = None
) -> tuple[list[Stmt], _Values, list[Table]]:
    stmts: list[Stmt] = []
    vector = values.vector
    if vector is None:  # the previous layer was unrolled: gather its scalars into a vector
        vector = naming.vector(number - 1, "v")
        stmts.append(Alloc(vector, len(values.exprs)))
        stmts.extend(Assign(Load(vector, (i,)), e) for i, e in enumerate(values.exprs))
    w_name, b_name = naming.weights_table(number), naming.bias_table(number)
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
    s = naming.vector(number, "h" if plain else "s")
    n_out = layer.n_outputs
    stmts.append(Alloc(s, n_out))
    stmts.append(For("j", 0, n_out, (Assign(Load(s, ("j",)), Load(b_name, ("j",))),)))
    stmts.extend(_input_major(s, w_name, vector, layer.n_inputs, n_out))
    h = naming.vector(number, "h")
    if not plain:
        stmts.append(Alloc(h, n_out))
        activate = activation_stmts(act, Load(s, ("j",)), Load(h, ("j",)), "e")
        stmts.append(For("j", 0, n_out, activate, role=ACTIVATE))
    column_of = {unit: k for k, unit in enumerate(columns)}
    outputs: tuple[Expr, ...] = tuple(Load(h, (column_of[j],)) for j in range(n_out))
    if act.name == "softmax":
        stmts.extend(_softmax(number, outputs))
        probabilities = [Var(neuron_name(number, "p", j, n_out)) for j in range(n_out)]
        return stmts, _variables(probabilities), tables
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
            BinOp("*", Load(w_name, (_offset("i", k), "j")), Var(naming.lane_input(k)))
            for k in offsets
        ]
        return For("j", 0, n_out, (Assign(Load(s, ("j",)), Sum((Load(s, ("j",)), *terms))),))

    stmts: list[Stmt] = []
    if blocked:
        loads = [
            Assign(Var(naming.lane_input(k)), Load(vector, (_offset("i", k),)))
            for k in range(step)
        ]
        body = (*loads, update(range(step)))
        stmts.append(For("i", 0, blocked, body, step=step, role=INPUT_MAJOR))
    if blocked < n_in:
        tail = (Assign(Var(naming.lane_input(0)), Load(vector, ("i",))), update(range(1)))
        stmts.append(For("i", blocked, n_in, tail, role=INPUT_MAJOR))
    return stmts


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
    top = Var(naming.softmax_max(number))
    stmts: list[Stmt] = [Assign(top, inputs[0])]
    stmts.extend(If(Compare(">", e, top), (Assign(top, e),)) for e in inputs[1:])
    exps = [Var(neuron_name(number, "e", j, width)) for j in range(width)]
    stmts.extend(
        Assign(e, Call("exp", (BinOp("-", h, top),))) for e, h in zip(exps, inputs, strict=True)
    )
    total = Var(naming.softmax_total(number))
    stmts.extend(_bounded_sum(total.name, list(exps)))
    stmts.extend(
        Assign(Var(neuron_name(number, "p", j, width)), BinOp("/", e, total))
        for j, e in enumerate(exps)
    )
    return stmts


def _window_normalization(n: int, eps: float) -> list[Stmt]:
    """xn = (x - mean) * (1 / (std + eps)), with both sums in the reference's lanes (lane_sum)."""
    x, xn = (lambda i: Load(naming.INPUT, (i,))), (lambda i: Load(naming.NORMALIZED, (i,)))
    total, mean, squares, d, scale, inv = (
        Var(v) for v in ("total", "mean", "squares", "d", "scale", "inv")
    )
    count = Const(float(n))
    whole = n - n % STAT_LANES
    lanes = [Var(naming.stat_lane("t", k)) for k in range(STAT_LANES)]
    deltas = [Var(naming.stat_lane("d", k)) for k in range(STAT_LANES)]

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
        Alloc(naming.NORMALIZED, n),
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
