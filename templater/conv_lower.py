"""Lowering of a ConvNetwork: one kernel per layer, as source lines for the Python or Numba target.

Each conv and dense layer is written either as a literal weight table plus loops (`table`) or as
literal arithmetic, one weighted term per line (`unrolled`), chosen per layer by the target's
compile budget like dense layers. Both keep the reference's summation order exactly (bias, then
input channel, kernel row, kernel column), and numba may not reassociate, so the programs agree
with `ConvNetwork.forward` bit for bit where no exp is involved.

The table form of a conv loops output channel, output row, then (channel, row, column) of the
kernel, and innermost over the output row's columns: every output keeps its order, and the inner
loop runs over contiguous memory, so it vectorises (stride 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from templater.convnet import (
    Act,
    Conv2D,
    ConvNetwork,
    Flatten,
    GlobalAvgPool,
    Layer,
    Pool2D,
    PReLU,
)
from templater.errors import UnsupportedError, UsageError
from templater.literals import literal
from templater.network import Dense

LAYOUTS = ("auto", "unrolled", "table")
# Terms per statement in an unrolled sum: CPython fails on one expression of ~3,000 terms.
TERMS_PER_STATEMENT = 64
# Elementwise activations a kernel writes as if/else (the rest go through the reference's
# formulas in the template helpers).
PIECEWISE = ("identity", "relu", "leaky_relu", "step", "clip", "hard_sigmoid")


@dataclass(frozen=True)
class ConvTarget:
    """What differs between the targets in a kernel's text."""

    name: str
    dtype: str
    unroll_budget: int  # weights of a dense layer up to which `auto` unrolls it
    conv_unroll_budget: int  # the same for a conv layer

    def const(self, value: float) -> str:
        text = literal(value, self.dtype)
        return f"np.float32({text})" if self.dtype == "float32" else text

    def index(self, array: str, *idx: object) -> str:
        if self.name == "numba":
            return f"{array}[{', '.join(str(i) for i in idx)}]"
        return array + "".join(f"[{i}]" for i in idx)


def conv_target(target: str, dtype: str) -> ConvTarget:
    if target not in ("python", "numba"):
        raise UsageError(f"unknown target {target!r}; choose one of python, numba")
    if dtype not in ("float64", "float32"):
        raise UsageError(f"unknown dtype {dtype!r}; choose float64 or float32")
    if target == "python" and dtype == "float32":
        raise UsageError("the python target has no float32 (Python floats are float64)")
    # Numba pays milliseconds of compile time per unrolled term, CPython microseconds. An
    # unrolled conv repeats its terms in a loop per output channel: PNet's cost 8.6 s of CPU to
    # compile (14.1 s against 5.5 s for tables) and ran no faster, so numba keeps convs as tables.
    # Unrolled dense heads cost about 9 ms of CPU per term (RNet's 768: 7 s), so only tiny ones.
    if target == "numba":
        return ConvTarget(target, dtype, 64, 0)
    return ConvTarget(target, dtype, 250_000, 250_000)


@dataclass(frozen=True)
class Kernel:
    """One layer's function: its tables' names and source, and its definition's lines.

    A kernel takes its tables as parameters: numba freezes a global array into the machine
    code, which is slow to compile and, for large arrays, cannot be cached."""

    name: str
    tables: tuple[str, ...]
    lines: tuple[str, ...]
    description: str  # made from structure (kinds, sizes), never from model-file text
    table_names: tuple[str, ...] = ()


def layer_prefix(where: int, index: int, net: str = "") -> str:
    """`t3` for trunk layer 3, `h1_0` for layer 0 of head 1 (after the net's prefix, as in
    `pnet_t3`): the one naming rule of kernels and their tables."""
    return f"{net}t{index}" if where < 0 else f"{net}h{where}_{index}"


def choose_layout(layer: Layer, layout: str, target: ConvTarget) -> str:
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    if not isinstance(layer, (Conv2D, Dense)):
        return "loops"
    if layout != "auto":
        return layout
    budget = target.conv_unroll_budget if isinstance(layer, Conv2D) else target.unroll_budget
    return "unrolled" if layer.weights.size <= budget else "table"


def kernels(
    net: ConvNetwork, target: ConvTarget, layout: str, prefix: str = ""
) -> tuple[list, list]:
    """The trunk's kernels and each head's, in order."""
    widths = _output_widths(net)

    def make(layer: Layer, prefix: str) -> Kernel:
        form = choose_layout(layer, layout, target)
        if isinstance(layer, Conv2D):
            return _conv(layer, prefix, target, form, widths[id(layer)])
        return _kernel(layer, prefix, target, form)

    trunk = [make(layer, layer_prefix(-1, i, prefix)) for i, layer in enumerate(net.trunk)]
    heads = [
        [make(layer, layer_prefix(h, i, prefix)) for i, layer in enumerate(layers)]
        for h, (_, layers) in enumerate(net.heads)
    ]
    return trunk, heads


def _output_widths(net: ConvNetwork) -> dict[int, int | None]:
    """Each layer's output columns for a fixed-size network (None: any size)."""
    out: dict[int, int | None] = {}
    if net.size is None:
        return {id(layer): None for _, _, layer in net.layers()}
    trunk_shape = (1, net.channels, *net.size)
    for where, layers in (("trunk", net.trunk), *net.heads):
        shape = trunk_shape
        for layer in layers:
            shape = net._chain(where, (layer,), shape)
            out[id(layer)] = shape[3] if len(shape) == 4 else None
        if where == "trunk":
            trunk_shape = shape
    return out


def _kernel(layer: Layer, prefix: str, target: ConvTarget, layout: str) -> Kernel:
    if isinstance(layer, Dense):
        return _dense(layer, prefix, target, layout)
    if isinstance(layer, Pool2D):
        return _pool(layer, prefix, target)
    numba = target.name == "numba"
    if isinstance(layer, PReLU):
        table = _table(f"{prefix.upper()}_A", layer.slopes, target, per_line=16)
        if numba:
            return _shared("_prelu", (table,), "prelu")
        return _elementwise(prefix, target, (table,), "prelu", f"{prefix.upper()}_A")
    if isinstance(layer, Act):
        name = layer.activation.name
        if name == "softmax":
            if numba:
                return _shared("_softmax", (), "softmax over channels")
            return _make(prefix, (), _softmax(target), target, "softmax over channels")
        if name not in PIECEWISE and name not in ("sigmoid", "tanh"):
            raise UnsupportedError(f"activation {name!r} in a convolutional program")
        return _elementwise(prefix, target, (), name, layer)
    if isinstance(layer, Flatten):
        if numba:
            return _shared(f"_flatten_{layer.order}", (), f"flatten, {layer.order} order")
        return _flatten(layer, prefix, target)
    if isinstance(layer, GlobalAvgPool):
        return _global_avg(prefix, target)
    raise UnsupportedError(f"no kernel for a {type(layer).__name__} layer")  # pragma: no cover


# -- tables -----------------------------------------------------------------------------------
def _table(name: str, values: np.ndarray, target: ConvTarget, per_line: int) -> tuple[str, str]:
    """A literal array: rows of `per_line` values, reshaped to the array's shape (numba) or
    nested lists of the same shape (python)."""
    flat = [literal(v, target.dtype) for v in values.reshape(-1)]
    if target.name == "numba":
        rows = [", ".join(flat[i : i + per_line]) + "," for i in range(0, len(flat), per_line)]
        body = "\n".join("    " + r for r in rows)
        dtype = ", dtype=np.float32" if target.dtype == "float32" else ""
        shape = tuple(int(s) for s in values.shape)
        return name, f"{name} = np.array([\n{body}\n]{dtype}).reshape({shape!r})"
    return name, f"{name} = {_nested(values, flat, 0, 0)[0]}"


def _nested(values: np.ndarray, flat: list[str], axis: int, start: int) -> tuple[str, int]:
    """Nested lists, the innermost axis on one line."""
    if axis == values.ndim - 1:
        n = values.shape[axis]
        return "[" + ", ".join(flat[start : start + n]) + "]", start + n
    parts = []
    for _ in range(values.shape[axis]):
        text, start = _nested(values, flat, axis + 1, start)
        parts.append(text)
    indent = "    " * (axis + 1)
    return "[\n" + "".join(f"{indent}{p},\n" for p in parts) + "    " * axis + "]", start


# -- conv -------------------------------------------------------------------------------------
def _describe_conv(layer: Conv2D) -> str:
    kind = "depthwise conv" if layer.groups == layer.in_channels > 1 else "conv"
    groups = f", {layer.groups} groups" if 1 < layer.groups < layer.in_channels else ""
    return (
        f"{kind} {layer.in_channels} -> {layer.out_channels}, kernel {layer.kernel[0]}x"
        f"{layer.kernel[1]}, stride {layer.stride[0]}x{layer.stride[1]}, padding "
        f"{layer.padding!r}{groups}"
    )


def _geometry_lines(layer: Conv2D | Pool2D, target: ConvTarget, x: str) -> list[str]:
    """Lines that set rows/cols of x, the padding, and the output size OH, OW."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    lines = (
        [f"rows, cols = {x}.shape[1], {x}.shape[2]"]
        if target.name == "numba"
        else [f"rows, cols = len({x}[0]), len({x}[0][0])"]
    )
    if isinstance(layer.padding, str):
        upper = layer.padding == "same_upper"
        lines += [
            f"pad_h = max(((rows + {sh - 1}) // {sh} - 1) * {sh} + {kh} - rows, 0)",
            f"pad_w = max(((cols + {sw - 1}) // {sw} - 1) * {sw} + {kw} - cols, 0)",
            f"pt = pad_h // 2{'' if upper else ' + pad_h % 2'}",
            f"pl = pad_w // 2{'' if upper else ' + pad_w % 2'}",
            "pb = pad_h - pt",
            "pr = pad_w - pl",
        ]
    else:
        pt, pl, pb, pr = layer.padding
        lines += [f"pt, pl, pb, pr = {pt}, {pl}, {pb}, {pr}"]
    ceil = isinstance(layer, Pool2D) and layer.ceil_mode
    for out, n, k, s, b in (("oh", "rows", kh, sh, "pt"), ("ow", "cols", kw, sw, "pl")):
        end = "pb" if out == "oh" else "pr"
        if ceil:
            lines += [
                f"{out} = ({n} + {b} + {end} - {k} + {s - 1}) // {s} + 1",
                f"if ({out} - 1) * {s} >= {n} + {b}:",
                f"    {out} -= 1",
            ]
        else:
            lines.append(f"{out} = ({n} + {b} + {end} - {k}) // {s} + 1")
    return lines


def _conv(
    layer: Conv2D, prefix: str, target: ConvTarget, layout: str, width: int | None
) -> Kernel:
    W, B = f"{prefix.upper()}_W", f"{prefix.upper()}_B"
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    per_in = layer.weights.shape[1]
    per_out = layer.out_channels // layer.groups
    numba = target.name == "numba"
    body = _geometry_lines(layer, target, "x")
    body.append("xp = _pad(x, pt, pl, pb, pr, 0.0)" if numba else "xp = _pad(x, pt, pl, pb, pr)")
    if numba:
        body.append(f"out = np.empty(({layer.out_channels}, oh, ow){_np_dtype(target)})")
    elif layout == "table":
        body.append("out = []")
    tables: tuple[str, ...] = ()
    ix = target.index
    if layout == "table" and numba and _channels_inner(layer, width):
        # small maps: vectorise across output channels, the weights as (c, ky, kx, o) rows
        tables = (
            _table(W + "T", layer.weights.transpose(1, 2, 3, 0), target, layer.out_channels),
            _table(B, layer.bias, target, per_line=8),
        )
        body += _numba_conv_channels(layer, W + "T", B)
    elif layout == "table":
        tables = (
            _table(W, layer.weights, target, per_line=kh * kw),
            _table(B, layer.bias, target, per_line=8),
        )
        body += [f"for o in range({layer.out_channels}):"]
        first = f"(o // {per_out}) * {per_in}"
        if numba:
            body = body[:-1] + _numba_conv_loops(layer, W, B, first)
        else:
            body += [
                f"    first = {first}",
                f"    w_o = {W}[o]",
                "    plane = []",
                "    for y in range(oh):",
                f"        row = [{B}[o]] * ow",
                f"        for c in range({per_in}):",
                f"            for ky in range({kh}):",
                f"                xr = xp[first + c][y * {sh} + ky]",
                "                w_k = w_o[c][ky]",
                f"                for kx in range({kw}):",
                "                    w = w_k[kx]",
                "                    for j in range(ow):",
                f"                        row[j] += w * xr[j * {sw} + kx]",
                "        plane.append(row)",
                "    out.append(plane)",
            ]
    else:
        if not numba:
            body += [
                f"out = [[[0.0] * ow for _ in range(oh)] for _ in range({layer.out_channels})]"
            ]
        # numba: one loop over the row's columns per output channel, so each vectorises
        body += ["for y in range(oh):"] + ([] if numba else ["    for j in range(ow):"])
        for o in range(layer.out_channels):
            first = (o // per_out) * per_in
            terms = [
                (
                    layer.weights[o, c, ky, kx],
                    ix("xp", first + c, _off("y", sh, ky), _off("j", sw, kx)),
                )
                for c in range(per_in)
                for ky in range(kh)
                for kx in range(kw)
            ]
            pos = ix("out", o, "y", "j")
            if numba:
                body.append("    for j in range(ow):")
            body += ["        " + line for line in _sum_lines(pos, layer.bias[o], terms, target)]
    body.append("return out")
    return _make(prefix, tables, body, target, _describe_conv(layer) + f", {layout}")


def _channels_inner(layer: Conv2D, width: int | None) -> bool:
    """Whether the numba table form vectorises across output channels (the small maps of a
    fixed-size network, narrower than the channels are many) rather than across a row."""
    return layer.groups == 1 and width is not None and width < layer.out_channels

def _numba_conv_loops(layer: Conv2D, W: str, B: str, first: str) -> list[str]:
    """Per output channel and row: the bias, then per input channel one pass over the row that
    adds the kernel's taps in (ky, kx) order in one statement, so the row is stored once per
    input channel rather than once per tap; the sum's order is the reference's."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    taps = [f"w{ky}_{kx} * x{ky}[{_off('j', sw, kx)}]" for ky in range(kh) for kx in range(kw)]
    return [
        f"for o in range({layer.out_channels}):",
        f"    first = {first}",
        "    for y in range(oh):",
        "        row = out[o, y]",
        f"        b = {B}[o]",
        "        for j in range(ow):",
        "            row[j] = b",
        f"        for c in range({layer.weights.shape[1]}):",
        *(f"            x{ky} = xp[first + c, {_off('y', sh, ky)}]" for ky in range(kh)),
        *(
            f"            w{ky}_{kx} = {W}[o, c, {ky}, {kx}]"
            for ky in range(kh)
            for kx in range(kw)
        ),
        "            for j in range(ow):",
        "                row[j] = (",
        "                    row[j]",
        *(f"                    + {t}" for t in taps),
        "                )",
    ]


def _numba_conv_channels(layer: Conv2D, WT: str, B: str) -> list[str]:
    """Per output position: the bias of every output channel, then per input channel one pass
    over the output channels adding the kernel's taps in (ky, kx) order (the reference's)."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    n_out = layer.out_channels
    return [
        f"acc = np.empty({n_out}, dtype=out.dtype)",
        "for y in range(oh):",
        "    for j in range(ow):",
        f"        for o in range({n_out}):",
        f"            acc[o] = {B}[o]",
        f"        for c in range({layer.in_channels}):",
        *(
            f"            t{ky}_{kx} = xp[c, {_off('y', sh, ky)}, {_off('j', sw, kx)}]"
            for ky in range(kh)
            for kx in range(kw)
        ),
        f"            wc = {WT}[c]",
        f"            for o in range({n_out}):",
        "                acc[o] = (",
        "                    acc[o]",
        *(
            f"                    + wc[{ky}, {kx}, o] * t{ky}_{kx}"
            for ky in range(kh)
            for kx in range(kw)
        ),
        "                )",
        f"        for o in range({n_out}):",
        "            out[o, y, j] = acc[o]",
    ]


def _off(var: str, stride: int, offset: int) -> str:
    base = var if stride == 1 else f"{var} * {stride}"
    return base if offset == 0 else f"{base} + {offset}"


def _sum_lines(target_expr: str, bias: float, terms: list, target: ConvTarget) -> list[str]:
    """`target = bias + w * x + ...` one term per line, cut into statements of at most
    TERMS_PER_STATEMENT terms that keep the left-to-right order."""
    lines = []
    live = [(w, x) for w, x in terms]
    chunks = [live[i : i + TERMS_PER_STATEMENT] for i in range(0, len(live), TERMS_PER_STATEMENT)]
    for n, chunk in enumerate(chunks or [[]]):
        start = target.const(bias) if n == 0 else target_expr
        lines.append(f"{target_expr} = (")
        lines.append(f"    {start}")
        lines += [f"    + {target.const(w)} * {x}" for w, x in chunk]
        lines.append(")")
    return lines


def _np_dtype(target: ConvTarget) -> str:
    return ", dtype=np.float32" if target.dtype == "float32" else ""


def _shared(name: str, tables: tuple[tuple[str, str], ...], description: str) -> Kernel:
    """A layer run by one of the program's shared helpers (templates/_conv_helpers_numba.j2):
    numba compiles each helper once for all the layers that use it."""
    return Kernel(name, tuple(src for _, src in tables), (), description,
                  tuple(n for n, _ in tables))


def _make(
    prefix: str,
    tables: tuple[tuple[str, str], ...],
    body: list[str],
    target: ConvTarget,
    description: str,
) -> Kernel:
    """A kernel `_<prefix>(x, TABLES...)` (numba; the python target reads its globals)."""
    names = tuple(name for name, _ in tables) if target.name == "numba" else ()
    params = ", ".join(("x", *names))
    deco = ["@_jit()"] if target.name == "numba" else []
    lines = (*deco, f"def _{prefix}({params}):", *("    " + line for line in body))
    return Kernel(f"_{prefix}", tuple(src for _, src in tables), lines, description, names)


# -- dense ------------------------------------------------------------------------------------
def _dense(layer: Dense, prefix: str, target: ConvTarget, layout: str) -> Kernel:
    if layer.activation.name != "identity":
        raise UnsupportedError("a dense layer's activation is a layer of its own here")
    W, B = f"{prefix.upper()}_W", f"{prefix.upper()}_B"
    n, m = layer.n_inputs, layer.n_outputs
    numba = target.name == "numba"
    tables: tuple[tuple[str, str], ...] = ()
    if layout == "table":
        tables = (_table(W, layer.weights, target, per_line=8), _table(B, layer.bias, target, 8))
        if numba:
            body = [
                f"out = {B}.copy()",
                f"for i in range({n}):",
                "    v = x[i]",
                f"    for j in range({m}):",
                f"        out[j] += {W}[i, j] * v",
            ]
        else:
            body = [
                f"out = list({B})",
                f"for i in range({n}):",
                "    v = x[i]",
                f"    w_i = {W}[i]",
                f"    for j in range({m}):",
                "        out[j] += w_i[j] * v",
            ]
    else:
        body = [f"out = np.empty({m}{_np_dtype(target)})" if numba else f"out = [0.0] * {m}"]
        for j in range(m):
            terms = [(layer.weights[i, j], f"x[{i}]") for i in range(n)]
            body += _sum_lines(f"out[{j}]", layer.bias[j], terms, target)
    body.append("return out")
    return _make(prefix, tables, body, target, f"dense {n} -> {m}, {layout}")


# -- pooling, flatten, activations ------------------------------------------------------------
def _pool(layer: Pool2D, prefix: str, target: ConvTarget) -> Kernel:
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    numba = target.name == "numba"
    body = _geometry_lines(layer, target, "x")
    body += (
        [f"out = np.empty((x.shape[0], oh, ow){_np_dtype(target)})", "for c in range(x.shape[0]):"]
        if numba
        else ["out = []", "for c in range(len(x)):", "    plane = []"]
    )
    if numba and layer.kind == "max":
        return _make(prefix, (), body[:-1] + _numba_max_pool(layer), target, _describe_pool(layer))
    read = "x[c, iy, ix]" if numba else "x[c][iy][ix]"
    write = "out[c, y, j] = " if numba else "row[j] = "
    body += ["    for y in range(oh):"]
    if not numba:
        body += ["        row = [0.0] * ow"]
    body += ["        for j in range(ow):"]
    inner = [
        f"for ky in range({kh}):",
        f"    iy = y * {sh} + ky - pt",
        "    if iy < 0 or iy >= rows:",
        "        continue",
        f"    for kx in range({kw}):",
        f"        ix = j * {sw} + kx - pl",
        "        if ix < 0 or ix >= cols:",
        "            continue",
    ]
    if layer.kind == "max":
        # -inf padding is never chosen over a real value: skipping it is the same
        start = ["m = -np.inf" if numba else "m = float('-inf')"]
        inner += [f"        v = {read}", "        if v > m:", "            m = v"]
        finish = [write + "m"]
    else:
        start = [f"acc = {target.const(0.0)}"]
        inner += [f"        acc += {read}"]
        if layer.count_include_pad:
            lo_hi = [
                f"h0 = max(y * {sh} - pt, -pt)",
                f"h1 = min(y * {sh} - pt + {kh}, rows + pb)",
                f"w0 = max(j * {sw} - pl, -pl)",
                f"w1 = min(j * {sw} - pl + {kw}, cols + pr)",
            ]
        else:
            lo_hi = [
                f"h0 = max(y * {sh} - pt, 0)",
                f"h1 = min(y * {sh} - pt + {kh}, rows)",
                f"w0 = max(j * {sw} - pl, 0)",
                f"w1 = min(j * {sw} - pl + {kw}, cols)",
            ]
        count = "(h1 - h0) * (w1 - w0)"
        cast = f"np.float32({count})" if target.dtype == "float32" else f"float({count})"
        finish = [*lo_hi, write + f"acc / {cast}"]
    body += ["            " + line for line in (*start, *inner, *finish)]
    if not numba:
        body += ["        plane.append(row)", "    out.append(plane)"]
    body.append("return out")
    return _make(prefix, (), body, target, _describe_pool(layer))


def _describe_pool(layer: Pool2D) -> str:
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    return f"{layer.kind} pool {kh}x{kw}, stride {sh}x{sw}, padding {layer.padding!r}" + (
        ", ceil mode" if layer.ceil_mode else ""
    )


def _numba_max_pool(layer: Pool2D) -> list[str]:
    """The reference's order exactly: the input padded with -inf (also past the padding in ceil
    mode), the window's first tap, then each later tap replacing the maximum when greater."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    taps = [(ky, kx) for ky in range(kh) for kx in range(kw)][1:]
    lines = [
        f"extra_h = max((oh - 1) * {sh} + {kh} - (rows + pt + pb), 0)",
        f"extra_w = max((ow - 1) * {sw} + {kw} - (cols + pl + pr), 0)",
        "xp = _pad(x, pt, pl, pb + extra_h, pr + extra_w, -np.inf)",
        "out = np.empty((x.shape[0], oh, ow), dtype=x.dtype)",
        "for c in range(x.shape[0]):",
        "    for y in range(oh):",
        f"        r = xp[c, {_off('y', sh, 0)}]",
        *(f"        r{ky} = xp[c, {_off('y', sh, ky)}]" for ky in range(1, kh)),
        "        for j in range(ow):",
        f"            m = r[{_off('j', sw, 0)}]",
    ]
    for ky, kx in taps:
        row = "r" if ky == 0 else f"r{ky}"
        lines += [
            f"            v = {row}[{_off('j', sw, kx)}]",
            "            if v > m:",
            "                m = v",
        ]
    return [*lines, "            out[c, y, j] = m", "return out"]


def _flatten(layer: Flatten, prefix: str, target: ConvTarget) -> Kernel:
    if layer.order == "chw":
        body = ["return [v for plane in x for row in plane for v in row]"]
    else:
        body = [
            "return [x[c][y][j] for y in range(len(x[0])) for j in range(len(x[0][0]))"
            " for c in range(len(x))]"
        ]
    return _make(prefix, (), body, target, f"flatten, {layer.order} order")


def _global_avg(prefix: str, target: ConvTarget) -> Kernel:
    numba = target.name == "numba"
    zero = target.const(0.0)
    if numba:
        body = [
            f"out = np.empty((x.shape[0], 1, 1){_np_dtype(target)})",
            "for c in range(x.shape[0]):",
            f"    acc = {zero}",
            "    for y in range(x.shape[1]):",
            "        for j in range(x.shape[2]):",
            "            acc += x[c, y, j]",
            "    out[c, 0, 0] = acc / (x.shape[1] * x.shape[2])",
            "return out",
        ]
        if target.dtype == "float32":
            body[6] = "    out[c, 0, 0] = acc / np.float32(x.shape[1] * x.shape[2])"
    else:
        body = [
            "out = []",
            "for plane in x:",
            "    acc = 0.0",
            "    for row in plane:",
            "        for v in row:",
            "            acc += v",
            "    out.append([[acc / float(len(plane) * len(plane[0]))]])",
            "return out",
        ]
    return _make(prefix, (), body, target, "global average pool")


def _activation_lines(name: str, layer: Act | None, target: ConvTarget, slope: str) -> list[str]:
    """`v` -> `v` through the activation, as if/else where it is piecewise linear."""
    c = target.const
    act = layer.activation if isinstance(layer, Act) else None
    if name == "prelu":
        return ["if v > " + c(0.0) + ":", "    pass", "else:", f"    v = {slope} * v"]
    if name == "identity":
        return []
    if name == "relu":
        return [f"if v > {c(0.0)}:", "    pass", "else:", f"    v = {c(0.0)}"]
    if name == "leaky_relu":
        return [f"if v > {c(0.0)}:", "    pass", "else:", f"    v = {c(act.alpha)} * v"]
    if name == "step":
        return [f"if v > {c(0.0)}:", f"    v = {c(1.0)}", "else:", f"    v = {c(0.0)}"]
    if name == "clip":
        return [
            f"if v < {c(act.alpha)}:",
            f"    v = {c(act.alpha)}",
            f"elif v > {c(act.beta)}:",
            f"    v = {c(act.beta)}",
        ]
    if name == "hard_sigmoid":
        return [
            f"v = {c(act.alpha)} * v + {c(act.beta)}",
            f"if v < {c(0.0)}:",
            f"    v = {c(0.0)}",
            f"elif v > {c(1.0)}:",
            f"    v = {c(1.0)}",
        ]
    if name == "sigmoid":
        return ["v = _sigmoid(v)"]
    if name == "tanh":
        return ["v = _tanh(v)"]
    raise UnsupportedError(name)  # pragma: no cover


def _elementwise(prefix: str, target: ConvTarget, tables: tuple, name: str, arg) -> Kernel:
    """An activation over maps (c, y, j) or a vector (c), in place on a copy."""
    slope_of = (lambda c: target.index(arg, c)) if name == "prelu" else (lambda c: "")
    layer = arg if isinstance(arg, Act) else None
    if target.name == "numba":
        body = [
            "out = x.copy()",
            "flat = out.reshape(x.shape[0], -1)",
            "for c in range(flat.shape[0]):",
            "    for k in range(flat.shape[1]):",
            "        v = flat[c, k]",
            *("        " + s for s in _activation_lines(name, layer, target, slope_of("c"))),
            "        flat[c, k] = v",
            "return out",
        ]
    else:
        act = _activation_lines(name, layer, target, slope_of("c"))
        body = [
            "out = []",
            "for c in range(len(x)):",
            "    xc = x[c]",
            "    if isinstance(xc, float):",
            "        v = xc",
            *("        " + s for s in act),
            "        out.append(v)",
            "        continue",
            "    plane = []",
            "    for r in xc:",
            "        row = []",
            "        for v in r:",
            *("            " + s for s in act),
            "            row.append(v)",
            "        plane.append(row)",
            "    out.append(plane)",
            "return out",
        ]
    return _make(prefix, tables, body, target, name)


def _softmax(target: ConvTarget) -> list[str]:
    """Over channels: exp(v - max), the exps summed over channels in order, each divided (the
    numba target's is the shared helper `_softmax`)."""
    if target.name == "python":
        body = [
            "if isinstance(x[0], float):",
            "    m = max(x)",
            "    e = [_exp(v - m) for v in x]",
            "    total = 0.0",
            "    for v in e:",
            "        total += v",
            "    return [v / total for v in e]",
            "out = [[[0.0] * len(x[0][0]) for _ in x[0]] for _ in x]",
            "for y in range(len(x[0])):",
            "    for j in range(len(x[0][0])):",
            "        m = max(plane[y][j] for plane in x)",
            "        e = [_exp(plane[y][j] - m) for plane in x]",
            "        total = 0.0",
            "        for v in e:",
            "            total += v",
            "        for c in range(len(x)):",
            "            out[c][y][j] = e[c] / total",
            "return out",
        ]
    return body
