"""The two sides of a diff: a model file compiled here, or a program file read back as data.

A program's layers come from its LAYERS constant (`ast.literal_eval`), which names the tables
and variables holding each layer's weights; tables are literals, an unrolled layer's sums one
`weight * input` term per line. A program is parsed, never run, and no comment or naming
convention is read.
"""

from __future__ import annotations

import ast
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import MalformedModelError
from templater.models import load_model
from templater.network import Network
from templater.verify.programs import ProgramFile, read_program


@dataclass(frozen=True, eq=False)
class LayerView:
    """One dense layer as a program computes it; a neuron the program drops has zero weights."""

    activation: str  # `relu`, `leaky_relu(alpha=0.1)`
    weights: np.ndarray  # (n_in, n_out)
    bias: np.ndarray
    layout: str

    @property
    def width(self) -> int:
        return int(self.bias.shape[0])


@dataclass(frozen=True, eq=False)
class Side:
    """A or B: where it came from, its program text and its structure."""

    path: Path
    kind: str  # "model" or "program"
    target: str
    text: str
    n_inputs: int
    layers: tuple[LayerView, ...]
    head: str
    threshold: float | None
    normalization: str
    input_shape: tuple[int, ...] | None
    digest: str
    net: Network | None = None  # model files only

    @property
    def architecture(self) -> str:
        return "-".join(str(n) for n in (self.n_inputs, *(v.width for v in self.layers)))


def read_side(
    path: str | os.PathLike, target: str, layouts: tuple[str, ...] | str = "auto"
) -> Side:
    """A model file compiled for `target` with `layouts`, or a program file read as it is."""
    path = Path(path)
    if path.suffix == ".py":
        return program_side(read_program(path))
    return model_side(path, load_model(path), target, layouts)


def model_side(path: Path, net: Network, target: str, layouts: tuple[str, ...] | str) -> Side:
    from templater.compiler import compile as compile_network
    from templater.lower import choose_layouts
    from templater.targets import get_target

    if not isinstance(layouts, str) and len(layouts) != len(net.layers):
        # Per-layer layouts copied from the other side fit only a network of its depth.
        layouts = _common(layouts)
    chosen = choose_layouts(net, layouts, get_target(target).unroll_budget)
    text = compile_network(net, target, chosen)
    views = tuple(
        LayerView(_describe(d.activation.name, _params(d.activation)), d.weights, d.bias, lay)
        for d, lay in zip(net.layers, chosen, strict=True)
    )
    head = net.head
    return Side(
        path, "model", target, text, net.input_size, _drop_dead(views), head.kind,
        head.threshold, _normalization(net.normalization.kind, net.normalization.eps),
        net.input_shape, net.digest(), net,
    )


def _common(layouts: tuple[str, ...]) -> str:
    return layouts[0] if layouts and all(x == layouts[0] for x in layouts) else "auto"


def _params(act: Any) -> dict[str, float]:
    return {k: getattr(act, k) for k in ("alpha", "beta") if getattr(act, k) is not None}


def _describe(name: str, params: dict[str, float]) -> str:
    shown = [f"{k}={v!r}" for k, v in params.items()]
    return f"{name}({', '.join(shown)})" if shown else name


def _normalization(kind: str, eps: float | None) -> str:
    return kind if kind == "none" else f"{kind} (eps {eps!r})"


# -- a program read back ----------------------------------------------------------------------


def program_side(pf: ProgramFile) -> Side:
    """The structure of a generated program, from its LAYERS constant and the code it names."""
    where = str(pf.path)
    if not pf.layers:
        raise MalformedModelError(
            f"{where}: has no LAYERS constant (written by an older templater); compile it again "
            "from its model file"
        )
    dense = [d for d in pf.layers if d.get("kind") == "dense"]
    eps = next((d.get("eps") for d in pf.layers if d.get("kind") == "normalize"), None)
    functions = {n.name: n for n in pf.tree.body if isinstance(n, ast.FunctionDef)}
    weights: list[np.ndarray] = []
    biases: list[np.ndarray] = []
    for number, spec in enumerate(dense, start=1):
        if spec.get("layer") != number:
            raise MalformedModelError(f"{where}: LAYERS lists its dense layers out of order")
        shape = (_count(spec, "n_inputs", where), _count(spec, "n_outputs", where))
        if spec.get("layout") == "table":
            weights.append(_table(pf, _name(spec, "weights", where), shape))
            biases.append(_table(pf, _name(spec, "bias", where), shape[1:]))
        elif spec.get("layout") == "unrolled":
            w, b = np.zeros(shape), np.zeros(shape[1])
            function = functions.get(_name(spec, "function", where))
            if function is None:
                raise MalformedModelError(f"{where}: layer {number}'s function is missing")
            _read_unrolled(function, spec, w, b, where)
            weights.append(w)
            biases.append(b)
        else:
            raise MalformedModelError(f"{where}: layer {number} has an unknown layout")
    for number, spec in enumerate(dense, start=1):
        if spec.get("columns"):
            _model_order(spec["columns"], number, weights, biases, where)
    views = tuple(
        LayerView(_describe(str(d["activation"]), dict(d.get("params", {}))), w, b,
                  str(d["layout"]))
        for d, w, b in zip(dense, weights, biases, strict=True)
    )
    if not views or views[0].weights.shape[0] != pf.n_inputs:
        raise MalformedModelError(f"{where}: LAYERS does not start with a layer of N_INPUTS inputs")
    c = pf.constants
    shape = c.get("INPUT_SHAPE")
    return Side(
        pf.path, "program", pf.target, pf.text, pf.n_inputs, _drop_dead(views), pf.head,
        c.get("THRESHOLD"), _normalization(str(c["NORMALIZATION"]), eps),
        tuple(shape) if shape else None, pf.digest,
    )


def _count(spec: dict, key: str, where: str) -> int:
    value = spec.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MalformedModelError(f"{where}: LAYERS: {key} must be a positive integer")
    return value


def _name(spec: dict, key: str, where: str) -> str:
    value = spec.get(key)
    if not isinstance(value, str) or not value.isidentifier():
        raise MalformedModelError(f"{where}: LAYERS: {key} must name a table or function")
    return value


def _model_order(
    order: object, number: int, weights: list[np.ndarray], biases: list[np.ndarray], where: str
) -> None:
    """Put a table layer's units back in model order: column k holds unit order[k], and the
    next layer reads column k (see templater.forms.scan_stages)."""
    width = biases[number - 1].shape[0]
    if (
        number >= len(weights)
        or not isinstance(order, tuple)
        or sorted(order) != list(range(width))
    ):
        raise MalformedModelError(
            f"{where}: LAYERS: columns is not an order of layer {number}'s {width} units"
        )
    units = list(order)
    k = number - 1
    w, b, following = weights[k].copy(), biases[k].copy(), weights[k + 1].copy()
    weights[k][:, units], biases[k][units], weights[k + 1][units, :] = w, b, following


def _table(pf: ProgramFile, name: str, shape: tuple[int, ...]) -> np.ndarray:
    for node in pf.tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == name:
            value = node.value
            if isinstance(value, ast.Call) and len(value.args) == 1:  # numba: np.array((...))
                value = value.args[0]
            try:
                arr = np.array(ast.literal_eval(value), dtype=np.float64)
            except (ValueError, TypeError, SyntaxError) as exc:
                raise MalformedModelError(
                    f"{pf.path}, line {node.lineno}: table {name} is not a literal of numbers"
                ) from exc
            if arr.shape != shape:
                raise MalformedModelError(
                    f"{pf.path}, line {node.lineno}: table {name} has shape {arr.shape}, "
                    f"expected {shape}"
                )
            return arr
    raise MalformedModelError(f"{pf.path}: table {name} is missing")


def _read_unrolled(
    function: ast.FunctionDef, spec: dict, w: np.ndarray, b: np.ndarray, where: str
) -> None:
    """Each unit's sum statements in `function` (the names LAYERS lists) into w[:, j], b[j]; a
    unit the program dropped keeps zero weights."""
    sums = spec.get("sums")
    if not isinstance(sums, tuple) or len(sums) != b.shape[0]:
        raise MalformedModelError(f"{where}: LAYERS: sums must name each of the layer's units")
    unit = {name: j for j, name in enumerate(sums)}
    reads = spec.get("reads")
    seen: set[str] = set()
    for stmt in function.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            continue
        name = getattr(stmt.targets[0], "id", "")
        if name not in unit:
            continue
        first = name not in seen
        seen.add(name)
        _read_sum(stmt, name, first, unit[name], reads, w, b, where)


def _read_sum(
    stmt: ast.Assign, name: str, first: bool, j: int, reads: object,
    w: np.ndarray, b: np.ndarray, where: str,
) -> None:
    """`name = bias + w0 * in0 - w1 * in1 ...` (or `name = name + ...`) into w[:, j] and b[j]."""
    terms: list[tuple[float, ast.expr]] = []
    node = stmt.value
    while isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        terms.append((1.0 if isinstance(node.op, ast.Add) else -1.0, node.right))
        node = node.left
    terms.append((1.0, node))
    terms.reverse()
    line = stmt.lineno
    head = terms[0][1]
    if isinstance(head, ast.Name) and head.id == name and not first:
        pass  # a continuation chunk of a long sum
    elif first:
        b[j] = _number(head, where, line)
    else:
        raise MalformedModelError(f"{where}, line {line}: unexpected second definition of {name}")
    for sign, term in terms[1:]:
        line = getattr(term, "lineno", line)
        if not (isinstance(term, ast.BinOp) and isinstance(term.op, ast.Mult)):
            raise MalformedModelError(
                f"{where}, line {line}: expected a `weight * input` term in {name}"
            )
        i = _input_index(term.right, reads, where, line)
        if i >= w.shape[0]:
            raise MalformedModelError(
                f"{where}, line {line}: input {i} is beyond the layer's {w.shape[0]} inputs"
            )
        w[i, j] = sign * _number(term.left, where, line)


def _number(node: ast.expr, where: str, line: int) -> float:
    try:
        value = ast.literal_eval(node)
    except ValueError:
        value = None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedModelError(f"{where}, line {line}: expected a number literal")
    return float(value)


def _input_index(node: ast.expr, reads: object, where: str, line: int) -> int:
    """Which input a term reads: `v[i]` of the vector LAYERS says the layer reads, or the i-th
    of the variables it lists."""
    if isinstance(reads, str):
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.value, ast.Name)
            and node.value.id == reads
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, int)
        ):
            return int(node.slice.value)
    elif isinstance(reads, tuple) and isinstance(node, ast.Name) and node.id in reads:
        return reads.index(node.id)
    raise MalformedModelError(f"{where}, line {line}: a term reads an input LAYERS does not list")


def _drop_dead(views: tuple[LayerView, ...]) -> tuple[LayerView, ...]:
    """Zero the incoming weights and bias of neurons with no path to an output (what the program
    drops), so a model and its program have the same structure."""
    out = list(views)
    live = np.ones(views[-1].width, dtype=bool)
    for k in range(len(views) - 1, 0, -1):
        used = np.any(views[k].weights[:, live] != 0.0, axis=1)
        prev = out[k - 1]
        if not used.all():
            w, b = prev.weights.copy(), prev.bias.copy()
            w[:, ~used], b[~used] = 0.0, 0.0
            out[k - 1] = LayerView(prev.activation, w, b, prev.layout)
        live = used
    return tuple(out)


def live_neurons(views: tuple[LayerView, ...]) -> list[np.ndarray]:
    """Per layer, which neurons reach an output through non-zero weights."""
    lives = [np.ones(views[-1].width, dtype=bool)]
    for k in range(len(views) - 1, 0, -1):
        lives.append(np.any(views[k].weights[:, lives[-1]] != 0.0, axis=1))
    return lives[::-1]
