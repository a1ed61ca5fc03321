"""Diffing: two models or programs compared as programs, as structure and as behaviour.

A and B are each a model file (.npz, .onnx: compiled here) or a generated program (.py: read as
text). Three views:

- the unified diff of the two program texts (stable names and one term per line keep it local);
- the structure: per layer and neuron, the weights that changed (count, max and mean absolute
  change over the neuron's bias and incoming weights), neurons added, removed, renumbered or
  pruned (no path to the output: the program drops them), activation, threshold and
  normalisation changes. A program's weights are recovered by parsing it with `ast` (never by
  running it): tables are literals, unrolled sums one `weight * input` term per line;
- the behaviour on data: decisions that flip each way, the distribution of score changes, and
  optionally a PNG of the flipped windows. Programs are run (imported); a model file is run by
  its numpy reference, which every program matches within `verify.tolerance_for`.
"""

from __future__ import annotations

import ast
import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import MalformedModelError, UsageError
from templater.lower import LAYOUTS, neuron_name
from templater.network import Network
from templater.programs import import_program
from templater.verify import (
    Inputs,
    ProgramFile,
    load_inputs,
    program_outputs,
    read_program,
)

# Flipped windows drawn in the PNG at most (the largest score changes first).
MAX_PICTURED = 48
# Statements we read in a kernel: the layer comment and a neuron's sum.
_LAYER_COMMENT = re.compile(
    r"^\s*# layer (\d+): dense (\d+) -> (\d+), (.+), (unrolled|table)\s*$"
)
_EPS_COMMENT = re.compile(r"^\s*# input normalisation: .*\(eps (\S+)\)\s*$")
_NEURON = re.compile(r"^l(\d+)_([sh])(\d+)$")


# -- the two sides ----------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LayerView:
    """One dense layer as a program computes it; a neuron the program drops has zero weights."""

    activation: str  # as the program's layer comment writes it: `relu`, `leaky_relu(alpha=0.1)`
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
        return _program_side(read_program(path))
    net = load_model(path)
    return _model_side(path, net, target, layouts)


def load_model(path: str | os.PathLike) -> Network:
    """A model file by suffix (.npz, .onnx); anything else is refused by the importers."""
    from templater.importers import load_any

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix.lower() == ".py":  # diff reads programs before it gets here; verify cannot
        raise UsageError(f"{path}: a program, where a model file (.npz, .onnx) is needed")
    if path.suffix.lower() not in (".npz", ".onnx"):
        raise UsageError(
            f"{path}: neither a model file (.npz, .onnx) nor a generated program (.py); "
            f"found suffix {path.suffix!r}"
        )
    return load_any(path)


def _model_side(path: Path, net: Network, target: str, layouts: tuple[str, ...] | str) -> Side:
    from templater.compiler import compile as compile_network
    from templater.lower import choose_layouts
    from templater.targets import get_target

    if not isinstance(layouts, str) and len(layouts) != len(net.layers):
        # Per-layer layouts copied from the other side fit only a network of its depth.
        layouts = _common(layouts)
    chosen = choose_layouts(net, layouts, get_target(target).unroll_budget)
    text = compile_network(net, target, chosen)
    views = tuple(
        LayerView(_describe(d.activation), d.weights, d.bias, lay)
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


def _describe(act: Any) -> str:
    params = [f"{k}={getattr(act, k)!r}" for k in ("alpha", "beta") if getattr(act, k) is not None]
    return f"{act.name}({', '.join(params)})" if params else act.name


def _normalization(kind: str, eps: float | None) -> str:
    return kind if kind == "none" else f"{kind} (eps {eps!r})"


def _program_side(pf: ProgramFile) -> Side:
    where = str(pf.path)
    # The layers are in `_kernel`, and the trailing unrolled ones of a Numba program in `_tail`.
    functions = {n.name: n for n in pf.tree.body if isinstance(n, ast.FunctionDef)}
    kernels = [functions[name] for name in ("_kernel", "_tail") if name in functions]
    lines = pf.text.splitlines()
    specs: list[tuple[int, int, str, str]] = []  # (n_in, n_out, activation, layout) per layer
    eps = None
    kernel_lines = [
        lineno for k in kernels for lineno in range(k.lineno, (k.end_lineno or k.lineno) + 1)
    ]
    for lineno in kernel_lines:
        line = lines[lineno - 1]
        found = _LAYER_COMMENT.match(line)
        if found:
            number, n_in, n_out, act, layout = found.groups()
            if int(number) != len(specs) + 1:
                raise MalformedModelError(f"{where}, line {lineno}: layers out of order")
            specs.append((int(n_in), int(n_out), act, layout))
        found = _EPS_COMMENT.match(line)
        if found:
            eps = float(found.group(1))
    if not specs:
        raise MalformedModelError(f"{where}: not a templater program (no layer comments)")
    weights = [np.zeros((n_in, n_out)) for n_in, n_out, _, _ in specs]
    biases = [np.zeros(n_out) for _, n_out, _, _ in specs]
    for number, (n_in, n_out, _, layout) in enumerate(specs, start=1):
        if layout == "table":
            w = _table(pf, f"L{number}_W", (n_in, n_out))
            b = _table(pf, f"L{number}_B", (n_out,))
            weights[number - 1], biases[number - 1] = w, b
    seen: set[tuple[int, int]] = set()
    for stmt in (stmt for k in kernels for stmt in k.body):
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            continue
        name = getattr(stmt.targets[0], "id", "")
        found = _NEURON.match(name)
        if not found:
            continue
        number, j = int(found.group(1)), int(found.group(3))
        if not 1 <= number <= len(specs) or specs[number - 1][3] != "unrolled":
            continue
        n_in, n_out, _, _ = specs[number - 1]
        if j >= n_out:
            raise MalformedModelError(
                f"{where}, line {stmt.lineno}: {name} is beyond the layer's {n_out} neurons"
            )
        first = (number, j) not in seen
        seen.add((number, j))
        _read_sum(stmt, name, first, number, j, weights[number - 1], biases[number - 1], where)
    c = pf.constants
    if "STAGED_UNITS" in c:  # a staged scanner's table holds layer 1's units in that order
        _model_order(c["STAGED_UNITS"], specs, weights, biases, where)
    views = tuple(
        LayerView(act, weights[k], biases[k], layout)
        for k, (_, _, act, layout) in enumerate(specs)
    )
    if views[0].weights.shape[0] != pf.n_inputs:
        raise MalformedModelError(
            f"{where}: layer 1 takes {views[0].weights.shape[0]} inputs but N_INPUTS is "
            f"{pf.n_inputs}"
        )
    shape = c.get("INPUT_SHAPE")
    return Side(
        pf.path, "program", pf.target, pf.text, pf.n_inputs, _drop_dead(views), pf.head,
        c.get("THRESHOLD"), _normalization(str(c["NORMALIZATION"]), eps),
        tuple(shape) if shape else None, pf.digest,
    )


def _model_order(
    order: object,
    specs: list[tuple[int, int, str, str]],
    weights: list[np.ndarray],
    biases: list[np.ndarray],
    where: str,
) -> None:
    """Put layer 1's units back in model order: table column k holds unit order[k], and the
    next layer reads column k (see templater.lower.scan_stages)."""
    width = specs[0][1]
    if (
        len(specs) < 2
        or not isinstance(order, tuple)
        or sorted(order) != list(range(width))
    ):
        raise MalformedModelError(
            f"{where}: STAGED_UNITS is not an order of layer 1's {width} units"
        )
    units = list(order)
    w1, b1, w2 = weights[0].copy(), biases[0].copy(), weights[1].copy()
    weights[0][:, units], biases[0][units], weights[1][units, :] = w1, b1, w2


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


def _read_sum(
    stmt: ast.Assign, name: str, first: bool, layer: int, j: int,
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
        i = _input_index(term.right, layer, where, line)
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


def _input_index(node: ast.expr, layer: int, where: str, line: int) -> int:
    """Which input a term reads: x[i] / xn[i] (layer 1), l{k}_hNN or l{k}_h[NN] (k = layer-1)."""
    prev = f"l{layer - 1}_h"
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        array = node.value.id
        index = node.slice
        if (
            ((array in ("x", "xn") and layer == 1) or array == prev)
            and isinstance(index, ast.Constant)
            and isinstance(index.value, int)
        ):
            return int(index.value)
    if isinstance(node, ast.Name) and node.id.startswith(prev) and node.id[len(prev):].isdigit():
        return int(node.id[len(prev):])
    raise MalformedModelError(f"{where}, line {line}: unexpected input in a layer {layer} term")


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


# -- structure --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NeuronChange:
    layer: int
    a: str | None  # the neuron's name in A's program (None: added)
    b: str | None  # ... in B's (None: removed)
    status: str  # changed, added, removed, pruned, revived, renumbered
    weights_changed: int = 0
    max_abs_change: float = 0.0
    mean_abs_change: float = 0.0


@dataclass(frozen=True)
class LayerChange:
    layer: int
    a: str  # "dense 625 -> 16, relu"
    b: str
    neurons: tuple[NeuronChange, ...]
    unchanged: int  # neurons present on both sides with identical weights and bias


@dataclass(frozen=True)
class Structure:
    architecture: tuple[str, str]
    layers: tuple[LayerChange, ...]
    threshold: tuple[float | None, float | None]
    normalization: tuple[str, str]
    head: tuple[str, str]

    @property
    def changed(self) -> bool:
        return (
            self.architecture[0] != self.architecture[1]
            or any(lc.neurons or lc.a != lc.b for lc in self.layers)
            or self.threshold[0] != self.threshold[1]
            or self.normalization[0] != self.normalization[1]
            or self.head[0] != self.head[1]
        )


def structure(a: Side, b: Side) -> Structure:
    """Match neurons layer by layer and measure what changed."""
    rows = [(i, i) for i in range(a.n_inputs)]  # layer 1 reads the same inputs on both sides
    live_a, live_b = live_neurons(a.layers), live_neurons(b.layers)
    layers = []
    for k in range(max(len(a.layers), len(b.layers))):
        number = k + 1
        va = a.layers[k] if k < len(a.layers) else None
        vb = b.layers[k] if k < len(b.layers) else None
        if va is None or vb is None:
            only = va or vb
            assert only is not None
            status = "removed" if vb is None else "added"
            neurons = tuple(
                NeuronChange(
                    number,
                    neuron_name(number, "h", j, only.width) if va else None,
                    neuron_name(number, "h", j, only.width) if vb else None,
                    status,
                )
                for j in range(only.width)
            )
            layers.append(LayerChange(number, _layer_text(va), _layer_text(vb), neurons, 0))
            rows = []
            continue
        pairs = _match(va, vb, rows)
        changes, unchanged = [], 0
        la, lb = live_a[k], live_b[k]
        ia = np.array([r[0] for r in rows], dtype=np.int64)
        ib = np.array([r[1] for r in rows], dtype=np.int64)
        only_a = np.setdiff1d(np.arange(va.weights.shape[0]), ia)
        only_b = np.setdiff1d(np.arange(vb.weights.shape[0]), ib)
        for ja, jb in pairs:
            name_a = neuron_name(number, "h", ja, va.width) if ja is not None else None
            name_b = neuron_name(number, "h", jb, vb.width) if jb is not None else None
            if ja is None:
                changes.append(NeuronChange(number, None, name_b, "added"))
                continue
            if jb is None:
                changes.append(NeuronChange(number, name_a, None, "removed"))
                continue
            if la[ja] and not lb[jb]:
                changes.append(NeuronChange(number, name_a, name_b, "pruned"))
                continue
            if not la[ja] and lb[jb]:
                changes.append(NeuronChange(number, name_a, name_b, "revived"))
                continue
            if not la[ja]:
                unchanged += 1  # dead on both sides: nothing of it reaches a program
                continue
            pa = np.concatenate([[va.bias[ja]], va.weights[ia, ja]])
            pb = np.concatenate([[vb.bias[jb]], vb.weights[ib, jb]])
            delta = np.abs(pb - pa)
            gone = np.abs(va.weights[only_a, ja])
            new = np.abs(vb.weights[only_b, jb])
            n_changed = int(np.sum(delta != 0.0) + np.sum(gone != 0.0) + np.sum(new != 0.0))
            if n_changed == 0:
                if name_a != name_b:
                    changes.append(NeuronChange(number, name_a, name_b, "renumbered"))
                else:
                    unchanged += 1
                continue
            every = np.concatenate([delta, gone, new])
            changes.append(
                NeuronChange(
                    number, name_a, name_b, "changed", n_changed,
                    float(every.max()), float(every.mean()),
                )
            )
        layers.append(
            LayerChange(number, _layer_text(va), _layer_text(vb), tuple(changes), unchanged)
        )
        rows = [(ja, jb) for ja, jb in pairs if ja is not None and jb is not None]
    return Structure(
        (a.architecture, b.architecture),
        tuple(layers),
        (a.threshold, b.threshold),
        (a.normalization, b.normalization),
        (a.head, b.head),
    )


def _layer_text(view: LayerView | None) -> str:
    if view is None:
        return "(none)"
    return f"dense {view.weights.shape[0]} -> {view.width}, {view.activation}"


def _match(
    va: LayerView, vb: LayerView, rows: list[tuple[int, int]]
) -> list[tuple[int | None, int | None]]:
    """Pair A's neurons with B's. Same width: by index. Otherwise align identical neurons (bias
    and weights on the matched inputs) like lines of text, so removing a middle neuron shows as
    one removal plus renumbered neighbours; unmatched runs pair up by position."""
    if va.width == vb.width:
        return [(j, j) for j in range(va.width)]
    ia = [r[0] for r in rows]
    ib = [r[1] for r in rows]
    sig_a = [(va.bias[j], *va.weights[ia, j]) for j in range(va.width)]
    sig_b = [(vb.bias[j], *vb.weights[ib, j]) for j in range(vb.width)]
    pairs: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(None, sig_a, sig_b, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            pairs.extend(zip(range(a0, a1), range(b0, b1), strict=True))
            continue
        n = min(a1 - a0, b1 - b0)
        pairs.extend((a0 + t, b0 + t) for t in range(n))
        pairs.extend((j, None) for j in range(a0 + n, a1))
        pairs.extend((None, j) for j in range(b0 + n, b1))
    return pairs


# -- behaviour --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Behaviour:
    data: str
    n: int
    scored_by: tuple[str, str]
    kind: str  # binary, multiclass or regression
    flips: np.ndarray  # indices whose decision differs, largest score change first
    to_positive: int  # binary: False -> True
    to_negative: int
    transitions: dict[str, int]  # multiclass: "a->b" -> count
    delta: np.ndarray  # B - A per input (binary/regression) or largest |change| per input
    scores: tuple[np.ndarray, np.ndarray]
    x: np.ndarray = field(repr=False)  # the rows run

    def distribution(self) -> dict[str, Any]:
        d = self.delta
        mag = np.abs(d)
        counts, edges = np.histogram(d, bins=10) if d.size else (np.zeros(0), np.zeros(0))
        return {
            "changed": int(np.sum(d != 0.0)),
            "mean": float(d.mean()) if d.size else 0.0,
            "mean_abs": float(mag.mean()) if d.size else 0.0,
            "abs_quantiles": {
                q: float(np.quantile(mag, float(q) / 100)) if d.size else 0.0
                for q in ("50", "90", "99", "100")
            },
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        }


def behaviour(a: Side, b: Side, inputs: Inputs) -> Behaviour:
    sa, by_a = _outputs(a, inputs.x)
    sb, by_b = _outputs(b, inputs.x)
    if sa.shape != sb.shape:
        raise UsageError(
            f"{a.path} gives {sa.shape[1:] or 1} outputs but {b.path} gives {sb.shape[1:] or 1}; "
            "their behaviour cannot be compared"
        )
    transitions: dict[str, int] = {}
    up = down = 0
    if a.head == "binary" and b.head == "binary":
        da, db = sa > a.threshold, sb > b.threshold
        flips = np.flatnonzero(da != db)
        up, down = int(np.sum(~da & db)), int(np.sum(da & ~db))
        delta = sb - sa
        kind = "binary"
    elif sa.ndim == 2:
        pa, pb = np.argmax(sa, axis=1), np.argmax(sb, axis=1)
        flips = np.flatnonzero(pa != pb)
        for i in flips:
            key = f"{pa[i]}->{pb[i]}"
            transitions[key] = transitions.get(key, 0) + 1
        transitions = dict(sorted(transitions.items()))
        diff = sb - sa
        delta = diff[np.arange(len(diff)), np.argmax(np.abs(diff), axis=1)]
        kind = "multiclass"
    else:
        flips = np.zeros(0, dtype=np.int64)
        delta = sb - sa
        kind = "regression"
    order = np.argsort(-np.abs(delta[flips]), kind="stable")
    return Behaviour(
        inputs.source, len(inputs.x), (by_a, by_b), kind, flips[order], up, down,
        transitions, delta, (sa, sb), inputs.x,
    )


def _outputs(side: Side, x: np.ndarray) -> tuple[np.ndarray, str]:
    """(n,) scores or (n, k) outputs: a program is run, a model file by its exact reference."""
    if side.net is None:
        return program_outputs(import_program(side.path), x), "the program"
    out = np.asarray(side.net.forward(x, exact=True), dtype=np.float64)
    return (out[:, 0] if out.shape[1] == 1 else out), "the numpy reference of the model"


def flips_png(a: Side, b: Side, result: Behaviour) -> bytes:
    """The flipped windows (largest score change first), each titled with both scores."""
    from templater import plots

    shape = a.input_shape or b.input_shape
    if not shape or len(shape) != 2:
        raise UsageError(
            "a picture of the flipped windows needs a 2-D input shape; these models have "
            f"{shape}"
        )
    picked = result.flips[:MAX_PICTURED]
    sa, sb = result.scores
    titles = []
    for i in picked:
        if result.kind == "multiclass":
            titles.append(f"#{i}: {np.argmax(sa[i])}->{np.argmax(sb[i])}")
        else:
            titles.append(f"#{i}\nA {sa[i]:.3g} B {sb[i]:.3g}")
    shown = f"{len(picked)} of {len(result.flips)}" if len(result.flips) > len(picked) else (
        f"{len(picked)}"
    )
    title = f"decisions that flip from {a.path.name} to {b.path.name} ({shown})"
    return plots.windows_png(result.x[picked], tuple(shape), titles, title)


# -- the whole diff ---------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Diff:
    a: Side
    b: Side
    unified: str
    structure: Structure
    behaviour: Behaviour | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def identical(self) -> bool:
        return self.a.text == self.b.text

    def to_json(self) -> dict[str, Any]:
        def side(s: Side) -> dict[str, Any]:
            return {"path": str(s.path), "kind": s.kind, "target": s.target,
                    "digest": s.digest, "architecture": s.architecture}

        st = self.structure
        out: dict[str, Any] = {
            "identical": self.identical,
            "a": side(self.a),
            "b": side(self.b),
            "structure": {
                "architecture": list(st.architecture),
                "threshold": list(st.threshold),
                "normalization": list(st.normalization),
                "head": list(st.head),
                "layers": [
                    {"layer": lc.layer, "a": lc.a, "b": lc.b, "unchanged": lc.unchanged,
                     "neurons": [n.__dict__ for n in lc.neurons]}
                    for lc in st.layers
                ],
            },
            "behaviour": None,
            "notes": list(self.notes),
            "unified_diff": self.unified,
        }
        if self.behaviour is not None:
            bh = self.behaviour
            out["behaviour"] = {
                "data": bh.data,
                "inputs": bh.n,
                "scored_by": list(bh.scored_by),
                "kind": bh.kind,
                "flips": len(bh.flips),
                "to_positive": bh.to_positive,
                "to_negative": bh.to_negative,
                "transitions": bh.transitions,
                "flipped_inputs": bh.flips.tolist(),
                "score_change": bh.distribution(),
            }
        return out

    def summary_lines(self, show: int = 20) -> list[str]:
        st = self.structure
        out = [f"structure: {st.architecture[0]} -> {st.architecture[1]}"
               if st.architecture[0] != st.architecture[1]
               else f"structure: {st.architecture[0]}"]
        for lc in st.layers:
            heading = lc.a if lc.a == lc.b else f"{lc.a}  ->  {lc.b}"
            out.append(f"  layer {lc.layer} ({heading}): {len(lc.neurons)} neuron(s) differ, "
                       f"{lc.unchanged} unchanged")
            for n in lc.neurons[:show]:
                out.append("    " + _neuron_text(n))
            if len(lc.neurons) > show:
                out.append(f"    ... and {len(lc.neurons) - show} more")
        for label, (x, y) in (("threshold", st.threshold), ("normalization", st.normalization),
                              ("head", st.head)):
            if x != y:
                out.append(f"  {label}: {x!r} -> {y!r}")
        bh = self.behaviour
        if bh is not None:
            out.append(f"behaviour on {bh.data}:")
            out.append(f"  scored by {bh.scored_by[0]} (A) and {bh.scored_by[1]} (B)")
            if bh.kind == "binary":
                out.append(f"  {len(bh.flips)} decision(s) flip: {bh.to_positive} to positive "
                           f"(score > threshold), {bh.to_negative} to negative")
            elif bh.kind == "multiclass":
                moves = ", ".join(f"{k}: {v}" for k, v in bh.transitions.items()) or "none"
                out.append(f"  {len(bh.flips)} prediction(s) change class ({moves})")
            d = bh.distribution()
            q = d["abs_quantiles"]
            out.append(
                f"  score change B - A: {d['changed']} of {bh.n} inputs change; mean "
                f"{d['mean']:+.3g}, |change| median {q['50']:.3g}, 90% {q['90']:.3g}, "
                f"99% {q['99']:.3g}, max {q['100']:.3g}"
            )
            if len(bh.flips):
                sa, sb = bh.scores
                listed = ", ".join(
                    f"#{i} ({_score(sa[i])} -> {_score(sb[i])})" for i in bh.flips[:10]
                )
                more = f", ... {len(bh.flips) - 10} more" if len(bh.flips) > 10 else ""
                out.append(f"  flipped (largest change first): {listed}{more}")
        out.extend(self.notes)
        out.append("identical programs" if self.identical else "the programs differ")
        return out


def _neuron_text(n: NeuronChange) -> str:
    if n.status == "changed":
        name = n.a if n.a == n.b else f"{n.a} (now {n.b})"
        return (f"{name}: {n.weights_changed} weight(s) changed, max |change| "
                f"{n.max_abs_change:.3g}, mean |change| {n.mean_abs_change:.3g}")
    if n.status == "added":
        return f"{n.b}: added"
    if n.status == "renumbered":
        return f"{n.a}: renumbered {n.b}, weights unchanged"
    if n.status == "pruned":
        return f"{n.a}: pruned (no longer reaches the output; the program drops it)"
    if n.status == "revived":
        return f"{n.b}: revived (reaches the output again)"
    return f"{n.a}: {n.status}"


def _score(v: Any) -> str:
    arr = np.asarray(v)
    return f"{float(arr):.4g}" if arr.ndim == 0 else f"class {int(np.argmax(arr))}"


def diff(
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    target: str | None = None,
    layout: str = "auto",
    data: str | os.PathLike | None = "auto",
    context: int = 3,
) -> Diff:
    """Compare A and B; `data=None` skips the behavioural diff.

    Programs must share a target and an input size. A model file is compiled for the other
    side's target (and, when depths match, its per-layer layouts), else for `target`
    (default python) with `layout`.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    pa, pb = Path(path_a), Path(path_b)
    programs = {p: read_program(p) for p in (pa, pb) if p.suffix == ".py"}
    targets = {pf.target for pf in programs.values()}
    if len(targets) > 1:
        fa, fb = programs[pa], programs[pb]
        raise UsageError(
            f"{pa} is a {fa.target} program but {pb} is a {fb.target} program; diff programs "
            "of the same target (or give the model files)"
        )
    if targets and target is not None and target not in targets:
        raise UsageError(
            f"--target {target} does not match the {targets.pop()} program given; "
            "leave --target out or give model files"
        )
    chosen = target or (targets.pop() if targets else "python")
    other = next(iter(programs.values()), None)
    layouts: tuple[str, ...] | str = other.layouts if other is not None and other.layouts else (
        layout
    )
    a = _program_side(programs[pa]) if pa in programs else read_side(pa, chosen, layouts)
    b = _program_side(programs[pb]) if pb in programs else read_side(pb, chosen, layouts)
    if a.n_inputs != b.n_inputs:
        raise UsageError(
            f"{pa} takes {a.n_inputs} inputs but {pb} takes {b.n_inputs}; "
            "only programs of the same input size can be diffed"
        )
    unified = "".join(
        difflib.unified_diff(
            a.text.splitlines(keepends=True), b.text.splitlines(keepends=True),
            f"a/{pa.name}", f"b/{pb.name}", n=context,
        )
    )
    result = Diff(a, b, unified, structure(a, b))
    if data is None:
        return result
    inputs = load_inputs(data, a.n_inputs)
    return Diff(a, b, unified, result.structure, behaviour(a, b, inputs))


def write_png(result: Diff, path: str | os.PathLike) -> int:
    """Write the PNG of flipped windows; returns how many are drawn (0: nothing flips, no file)."""
    from templater.fileio import write_atomic

    if result.behaviour is None or not len(result.behaviour.flips):
        return 0
    write_atomic(path, flips_png(result.a, result.b, result.behaviour))
    return min(len(result.behaviour.flips), MAX_PICTURED)
