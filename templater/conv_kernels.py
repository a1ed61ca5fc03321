"""The parts every convolutional kernel is made of, and the kernels of the layers without a form
to choose (pooling, flatten, activations, softmax), for the Python and Numba targets.

`ConvTarget` is what differs between the targets in a kernel's text; `make_kernel` wraps a body
into a function (numba kernels take their literal tables as parameters: numba freezes a global
array into the machine code, slow to compile and, for large arrays, uncachable). Every kernel
keeps the reference's order (templater.convnet): max pooling the first tap then strictly greater
ones, average pooling 0.0 plus the taps in (ky, kx) order, softmax's sum over channels in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from templater.convnet import Act, Conv2D, Flatten, Pool2D
from templater.errors import UnsupportedError, UsageError
from templater.literals import literal


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
    absorbs_next: bool = False  # applies the next layer's activation (that layer: no call)


def layer_prefix(where: int, index: int, net: str = "") -> str:
    """`t3` for trunk layer 3, `h1_0` for layer 0 of head 1 (after the net's prefix, as in
    `pnet_t3`): the one naming rule of kernels and their tables."""
    return f"{net}t{index}" if where < 0 else f"{net}h{where}_{index}"


def table_source(
    name: str, values: np.ndarray, target: ConvTarget, per_line: int
) -> tuple[str, str]:
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
def geometry_lines(
    layer: Conv2D | Pool2D, target: ConvTarget, x: str, hwc: bool = False
) -> list[str]:
    """Lines that set rows/cols of x (`hwc`: a (rows, columns, channels) map), the padding, and
    the output size OH, OW."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    lines = (
        [f"rows, cols = {x}.shape[{0 if hwc else 1}], {x}.shape[{1 if hwc else 2}]"]
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


def offset_index(var: str, stride: int, offset: int) -> str:
    base = var if stride == 1 else f"{var} * {stride}"
    return base if offset == 0 else f"{base} + {offset}"


def np_dtype_arg(target: ConvTarget) -> str:
    return ", dtype=np.float32" if target.dtype == "float32" else ""


def shared_kernel(name: str, tables: tuple[tuple[str, str], ...], description: str) -> Kernel:
    """A layer run by one of the program's shared helpers (templates/_conv_helpers_numba.j2):
    numba compiles each helper once for all the layers that use it."""
    return Kernel(
        name, tuple(src for _, src in tables), (), description, tuple(n for n, _ in tables)
    )


def make_kernel(
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
def pool_kernel(layer: Pool2D, prefix: str, target: ConvTarget, hwc: bool = False) -> Kernel:
    """`hwc`: the input is a (rows, columns, channels) map (numba max pools), and so the output."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    numba = target.name == "numba"
    body = geometry_lines(layer, target, "x", hwc)
    if hwc:
        assert numba and layer.kind == "max", "only numba max pools read hwc maps"
        lines = body + _numba_max_pool_hwc(layer)
        return make_kernel(prefix, (), lines, target, _describe_pool(layer) + ", hwc maps")
    if numba and layer.kind == "max":
        lines = body + _numba_max_pool(layer)
        return make_kernel(prefix, (), lines, target, _describe_pool(layer))
    body += (
        [
            f"out = np.empty((x.shape[0], oh, ow){np_dtype_arg(target)})",
            "for c in range(x.shape[0]):",
        ]
        if numba
        else ["out = []", "for c in range(len(x)):", "    plane = []"]
    )
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
    return make_kernel(prefix, (), body, target, _describe_pool(layer))


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
        f"        r = xp[c, {offset_index('y', sh, 0)}]",
        *(f"        r{ky} = xp[c, {offset_index('y', sh, ky)}]" for ky in range(1, kh)),
        "        for j in range(ow):",
        f"            m = r[{offset_index('j', sw, 0)}]",
    ]
    for ky, kx in taps:
        row = "r" if ky == 0 else f"r{ky}"
        lines += [
            f"            v = {row}[{offset_index('j', sw, kx)}]",
            "            if v > m:",
            "                m = v",
        ]
    return [*lines, "            out[c, y, j] = m", "return out"]


def _numba_max_pool_hwc(layer: Pool2D) -> list[str]:
    """The reference's order on a (rows, columns, channels) map, vectorised across channels: per
    output position the window's first tap (-inf where it is padding), then each later tap
    inside the map replacing the maximum where greater (a -inf padding tap never does). A window
    inside the map takes all its taps in one loop over the channels: RNet's pool 3x3 over
    22 x 22 x 28 took 4.1 us so, 8.4 us with a loop per tap."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    taps = [(ky, kx) for ky in range(kh) for kx in range(kw)]

    def where(ky: int, kx: int) -> list[str]:
        return [
            f"iy = {offset_index('y', sh, ky)} - pt",
            f"ix = {offset_index('j', sw, kx)} - pl",
            "if iy >= 0 and iy < rows and ix >= 0 and ix < cols:",
        ]

    def tap(ky: int, kx: int) -> str:
        return f"x[{offset_index('iy', 1, ky)}, {offset_index('ix', 1, kx)}]"

    lines = [
        "out = np.empty((oh, ow, x.shape[2]), dtype=x.dtype)",
        "for y in range(oh):",
        "    for j in range(ow):",
        "        m = out[y, j]",
        f"        iy = {offset_index('y', sh, 0)} - pt",
        f"        ix = {offset_index('j', sw, 0)} - pl",
        f"        if iy >= 0 and iy + {kh} <= rows and ix >= 0 and ix + {kw} <= cols:",
        *(f"            t{k} = {tap(ky, kx)}" for k, (ky, kx) in enumerate(taps)),
        "            for c in range(m.shape[0]):",
        "                a = t0[c]",
        *(
            line
            for k in range(1, len(taps))
            for line in (f"                v = t{k}[c]", "                a = v if v > a else a")
        ),
        "                m[c] = a",
        "            continue",
        *("        " + line for line in where(0, 0)),
        "            first = x[iy, ix]",
        "            for c in range(m.shape[0]):",
        "                m[c] = first[c]",
        "        else:",
        "            for c in range(m.shape[0]):",
        "                m[c] = -np.inf",
    ]
    for ky, kx in taps[1:]:
        lines += [
            *("        " + line for line in where(ky, kx)),
            "            tap = x[iy, ix]",
            "            for c in range(m.shape[0]):",
            "                v = tap[c]",
            "                m[c] = v if v > m[c] else m[c]",
        ]
    return [*lines, "return out"]


def flatten_kernel(layer: Flatten, prefix: str, target: ConvTarget) -> Kernel:
    if layer.order == "chw":
        body = ["return [v for plane in x for row in plane for v in row]"]
    else:
        body = [
            "return [x[c][y][j] for y in range(len(x[0])) for j in range(len(x[0][0]))"
            " for c in range(len(x))]"
        ]
    return make_kernel(prefix, (), body, target, f"flatten, {layer.order} order")


def global_avg_kernel(prefix: str, target: ConvTarget) -> Kernel:
    numba = target.name == "numba"
    zero = target.const(0.0)
    if numba:
        body = [
            f"out = np.empty((x.shape[0], 1, 1){np_dtype_arg(target)})",
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
    return make_kernel(prefix, (), body, target, "global average pool")


def activation_lines(
    name: str, layer: Act | None, target: ConvTarget, slope: str, v: str = "v"
) -> list[str]:
    """`v` -> `v` through the activation, as if/else where it is piecewise linear (`v`: the
    variable's name)."""
    c = target.const
    act = layer.activation if isinstance(layer, Act) else None
    if name == "prelu":
        return [f"if {v} > {c(0.0)}:", "    pass", "else:", f"    {v} = {slope} * {v}"]
    if name == "identity":
        return []
    if name == "relu":
        return [f"if {v} > {c(0.0)}:", "    pass", "else:", f"    {v} = {c(0.0)}"]
    if name == "leaky_relu":
        return [f"if {v} > {c(0.0)}:", "    pass", "else:", f"    {v} = {c(act.alpha)} * {v}"]
    if name == "step":
        return [f"if {v} > {c(0.0)}:", f"    {v} = {c(1.0)}", "else:", f"    {v} = {c(0.0)}"]
    if name == "clip":
        return [
            f"if {v} < {c(act.alpha)}:",
            f"    {v} = {c(act.alpha)}",
            f"elif {v} > {c(act.beta)}:",
            f"    {v} = {c(act.beta)}",
        ]
    if name == "hard_sigmoid":
        return [
            f"{v} = {c(act.alpha)} * {v} + {c(act.beta)}",
            f"if {v} < {c(0.0)}:",
            f"    {v} = {c(0.0)}",
            f"elif {v} > {c(1.0)}:",
            f"    {v} = {c(1.0)}",
        ]
    if name == "sigmoid":
        return [f"{v} = _sigmoid({v})"]
    if name == "tanh":
        return [f"{v} = _tanh({v})"]
    raise UnsupportedError(name)  # pragma: no cover


def elementwise_kernel(prefix: str, target: ConvTarget, tables: tuple, name: str, arg) -> Kernel:
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
            *("        " + s for s in activation_lines(name, layer, target, slope_of("c"))),
            "        flat[c, k] = v",
            "return out",
        ]
    else:
        act = activation_lines(name, layer, target, slope_of("c"))
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
    return make_kernel(prefix, tables, body, target, name)


def softmax_lines(target: ConvTarget) -> list[str]:
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
