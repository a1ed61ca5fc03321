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

from dataclasses import dataclass, replace

import numpy as np

from templater.conv_kernels import (
    ConvTarget,
    Kernel,
    activation_lines,
    elementwise_kernel,
    flatten_kernel,
    geometry_lines,
    global_avg_kernel,
    layer_prefix,
    make_kernel,
    np_dtype_arg,
    offset_index,
    pool_kernel,
    shared_kernel,
    softmax_lines,
    table_source,
)
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
from templater.network import Dense

LAYOUTS = ("auto", "unrolled", "table")
# Terms per statement in an unrolled sum: CPython fails on one expression of ~3,000 terms.
TERMS_PER_STATEMENT = 64
# Elementwise activations a kernel writes as if/else (the rest go through the reference's
# formulas in the template helpers).
PIECEWISE = ("identity", "relu", "leaky_relu", "step", "clip", "hard_sigmoid")


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
    hwc = _hwc_maps(net, target, layout, widths)

    def part(layers: tuple, where: int, hwc_in: bool) -> tuple[list[Kernel], bool]:
        """The kernels, and whether the last one's output is an hwc map."""
        out: list[Kernel] = []
        for i, layer in enumerate(layers):
            name = layer_prefix(where, i, prefix)
            if out and out[-1].absorbs_next:
                out.append(fused_kernel(layer))
                continue
            form = choose_layout(layer, layout, target)
            hwc_out = id(layer) in hwc
            if isinstance(layer, Conv2D):
                after = layers[i + 1] if i + 1 < len(layers) else None
                applies = _applies_next(layer, after, layout, target)
                act = (after, layer_prefix(where, i + 1, prefix)) if applies else None
                maps = (hwc_in, hwc_out)
                out.append(_conv(layer, name, target, form, widths[id(layer)], act, maps))
            elif isinstance(layer, Pool2D):
                out.append(pool_kernel(layer, name, target, hwc_in))
            elif isinstance(layer, Flatten) and target.name == "numba":
                out.append(_numba_flatten(layer, hwc_in))
            else:
                out.append(_kernel(layer, name, target, form))
            hwc_in = hwc_out
        return out, hwc_in

    trunk, trunk_hwc = part(net.trunk, -1, False)
    heads = [part(layers, h, trunk_hwc)[0] for h, (_, layers) in enumerate(net.heads)]
    return trunk, heads


def _hwc_maps(
    net: ConvNetwork, target: ConvTarget, layout: str, widths: dict[int, int | None]
) -> set[int]:
    """The layers whose output map a numba program keeps as (rows, columns, channels): the
    channels form's sums of a position lie side by side, so it stores them as vectors (not one
    scalar per channel), and a max pool over such a map vectorises across channels. Only where
    every kernel on the way reads that layout: channels-form convs without padding, max pools,
    a flatten in hwc order (then a plain ravel: the transposing copy is gone). RNet on 64 crops
    took 3.73 ms so against 4.69 ms with (channels, rows, columns) maps, ONet 24.7 against 30.4
    ms (their first pools 4.0 against 10.2 us and 12.7 against 34 us per crop). The numbers are
    the same: only where each value is kept changes."""
    if target.name != "numba":
        return set()

    def channels_conv(layer: Layer) -> bool:
        return (
            isinstance(layer, Conv2D)
            and choose_layout(layer, layout, target) == "table"
            and _channels_inner(layer, widths[id(layer)])
        )

    def real(layers: tuple) -> list[Layer]:
        """The layers with a kernel of their own (an activation its conv applies has none)."""
        return [
            layer
            for i, layer in enumerate(layers)
            if not (i and _applies_next(layers[i - 1], layer, layout, target))
        ]

    def reads_hwc(layers: list[Layer], then: bool) -> list[bool]:
        """Per layer, whether it can take an hwc map (`then`: whether what follows can)."""
        out = []
        for layer in reversed(layers):
            if channels_conv(layer):
                then = layer.padding == (0, 0, 0, 0)
            elif isinstance(layer, Pool2D):
                then = then and layer.kind == "max"  # its output keeps its input's layout
            else:
                then = isinstance(layer, Flatten) and layer.order == "hwc"
            out.append(then)
        return out[::-1]

    hwc: set[int] = set()

    def mark(layers: list[Layer], hwc_in: bool, then: bool) -> bool:
        """Marks the layers that write hwc maps; returns the layout of the last one's output."""
        reads = [*reads_hwc(layers, then)[1:], then][: len(layers)]  # each one's reader's
        for layer, next_reads in zip(layers, reads, strict=True):
            if channels_conv(layer):
                hwc_in = next_reads
            elif not isinstance(layer, Pool2D):
                hwc_in = False
            if hwc_in:
                hwc.add(id(layer))
        return hwc_in

    heads = [real(layers) for _, layers in net.heads]
    heads_read = bool(heads) and all(h and reads_hwc(h, False)[0] for h in heads)
    trunk_hwc = mark(real(net.trunk), False, heads_read)
    for layers in heads:
        mark(layers, trunk_hwc, False)
    return hwc


def _applies_next(layer: Layer, after: Layer | None, layout: str, target: ConvTarget) -> bool:
    """Whether `layer`'s kernel applies the activation `after` it (which then has no kernel):
    numba table-form convs do, for PReLU and the piecewise activations."""
    return (
        target.name == "numba"
        and isinstance(layer, Conv2D)
        and choose_layout(layer, layout, target) == "table"
        and _fusable(after)
    )


def _numba_flatten(layer: Flatten, hwc_in: bool) -> Kernel:
    """A map's values as they lie where that is the order asked for (a chw map in chw order, an
    hwc map in hwc order); a (channels, rows, columns) map in hwc order is transposed."""
    if hwc_in:
        assert layer.order == "hwc", "only a flatten in hwc order reads an hwc map"
        return shared_kernel("_ravel", (), "flatten, hwc order (of an hwc map)")
    if layer.order == "chw":
        return shared_kernel("_ravel", (), "flatten, chw order")
    return shared_kernel("_flatten_hwc", (), "flatten, hwc order")


def _fusable(layer: Layer | None) -> bool:
    """An activation a conv can apply as it stores each output (numba table forms): one pass
    over the maps less; the value is the same (the activation of the finished sum)."""
    if isinstance(layer, PReLU):
        return True
    return isinstance(layer, Act) and layer.activation.name in PIECEWISE


def fused_kernel(layer: Layer) -> Kernel:
    """The placeholder of an activation the conv before it applies: no function, no call."""
    return Kernel("", (), (), f"{_fused_name(layer)}, applied by the conv before it")


def _fused_name(layer: Layer) -> str:
    return "prelu" if isinstance(layer, PReLU) else layer.activation.name


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
        return pool_kernel(layer, prefix, target)
    numba = target.name == "numba"
    if isinstance(layer, PReLU):
        table = table_source(f"{prefix.upper()}_A", layer.slopes, target, per_line=16)
        if numba:
            return shared_kernel("_prelu", (table,), "prelu")
        return elementwise_kernel(prefix, target, (table,), "prelu", f"{prefix.upper()}_A")
    if isinstance(layer, Act):
        name = layer.activation.name
        if name == "softmax":
            if numba:
                return shared_kernel("_softmax", (), "softmax over channels")
            return make_kernel(prefix, (), softmax_lines(target), target, "softmax over channels")
        if name not in PIECEWISE and name not in ("sigmoid", "tanh"):
            raise UnsupportedError(f"activation {name!r} in a convolutional program")
        return elementwise_kernel(prefix, target, (), name, layer)
    if isinstance(layer, Flatten):  # numba's: _numba_flatten
        return flatten_kernel(layer, prefix, target)
    if isinstance(layer, GlobalAvgPool):
        return global_avg_kernel(prefix, target)
    raise UnsupportedError(f"no kernel for a {type(layer).__name__} layer")  # pragma: no cover


# -- tables -----------------------------------------------------------------------------------
def _describe_conv(layer: Conv2D) -> str:
    kind = "depthwise conv" if layer.groups == layer.in_channels > 1 else "conv"
    groups = f", {layer.groups} groups" if 1 < layer.groups < layer.in_channels else ""
    return (
        f"{kind} {layer.in_channels} -> {layer.out_channels}, kernel {layer.kernel[0]}x"
        f"{layer.kernel[1]}, stride {layer.stride[0]}x{layer.stride[1]}, padding "
        f"{layer.padding!r}{groups}"
    )


def _conv(
    layer: Conv2D,
    prefix: str,
    target: ConvTarget,
    layout: str,
    width: int | None,
    act: tuple[Layer, str] | None = None,
    maps: tuple[bool, bool] = (False, False),
) -> Kernel:
    """`act`: the activation after the conv and its prefix, given where the conv applies it as
    it stores each output (_applies_next; the placeholder fused_kernel then stands for it). `maps`:
    whether its input and its output are hwc maps (channels form only, see _hwc_maps)."""
    W, B = f"{prefix.upper()}_W", f"{prefix.upper()}_B"
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    per_in = layer.weights.shape[1]
    per_out = layer.out_channels // layer.groups
    numba = target.name == "numba"
    hwc_in, hwc_out = maps
    body = geometry_lines(layer, target, "x", hwc_in)
    if numba and layer.padding == (0, 0, 0, 0):
        body.append("xp = x")  # no _pad to compile for this layer's input type
    else:
        pad_args = "x, pt, pl, pb, pr, 0.0" if numba else "x, pt, pl, pb, pr"
        body.append(f"xp = _pad({pad_args})")
    if numba:
        shape = "oh, ow, {0}" if hwc_out else "{0}, oh, ow"
        shape = shape.format(layer.out_channels)
        body.append(f"out = np.empty(({shape}){np_dtype_arg(target)})")
    elif layout == "table":
        body.append("out = []")
    tables: tuple[tuple[str, str], ...] = ()
    ix = target.index
    fuse = _Fused(*act) if act is not None else None
    act_tables: tuple[tuple[str, str], ...] = ()
    if layout == "table" and numba and _channels_inner(layer, width):
        # small maps: vectorise across output channels, the weights as (c, ky, kx, o) rows,
        # the output channels padded with zeros to whole vectors (see LANES)
        lanes = LANES[target.dtype]
        padded = -(-layer.out_channels // lanes) * lanes
        extra = padded - layer.out_channels
        weights = np.pad(layer.weights.transpose(1, 2, 3, 0), ((0, 0),) * 3 + ((0, extra),))
        block = _block(width, padded // lanes)
        tables = (
            table_source(W + "T", weights, target, padded),
            # one bias per sum of a block: the block starts as one copy of this table
            table_source(B, np.tile(np.pad(layer.bias, (0, extra)), block), target, per_line=8),
        )
        body += _numba_conv_channels(layer, W + "T", B, padded, block, fuse, target, maps)
        act_tables = fuse.tables(target, padded, block) if fuse else ()
    elif layout == "table":
        assert maps == (False, False), "only the channels form reads or writes hwc maps"
        tables = (
            table_source(W, layer.weights, target, per_line=kh * kw),
            table_source(B, layer.bias, target, per_line=8),
        )
        if numba:
            body += _numba_conv_loops(layer, W, B, f"(o0 // {per_out}) * {per_in}", fuse, target)
            act_tables = fuse.tables(target, layer.out_channels) if fuse else ()
        else:
            body += [
                f"for o in range({layer.out_channels}):",
                f"    first = (o // {per_out}) * {per_in}",
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
                    ix("xp", first + c, offset_index("y", sh, ky), offset_index("j", sw, kx)),
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
    kernel = make_kernel(
        prefix, tables + act_tables, body, target, _describe_conv(layer) + f", {layout}"
    )
    return replace(kernel, absorbs_next=fuse is not None)


@dataclass(frozen=True)
class _Fused:
    """An activation a conv kernel applies to its finished sums (PReLU's slopes: a table)."""

    layer: Layer
    prefix: str

    @property
    def slopes(self) -> str | None:
        return f"{self.prefix.upper()}_A" if isinstance(self.layer, PReLU) else None

    def tables(
        self, target: ConvTarget, channels: int, repeat: int = 1
    ) -> tuple[tuple[str, str], ...]:
        """PReLU's slopes, zero-padded to `channels` (a padded channel is never stored), the
        whole repeated `repeat` times (one slope per sum of a channels-form block)."""
        if not isinstance(self.layer, PReLU):
            return ()
        extra = channels - self.layer.slopes.size
        slopes = np.tile(np.pad(self.layer.slopes, (0, extra)), repeat)
        return (table_source(self.slopes, slopes, target, 16),)

    def lines(self, target: ConvTarget, var: str, slope: str) -> list[str]:
        if isinstance(self.layer, PReLU):
            return activation_lines("prelu", None, target, slope, var)
        return activation_lines(self.layer.activation.name, self.layer, target, "", var)


# Output channels at least this many vectorise well across channels (a float32 vector holds 16):
# PNet's conv 16 -> 32 over a 125 x 125 map took 3.07 ms by rows, 2.0 ms across channels; its
# conv 3 -> 10 took 0.69 ms by rows and 4.1 ms across channels.
CHANNELS_FORM_MIN_OUT = 16


def _channels_inner(layer: Conv2D, width: int | None) -> bool:
    """Whether the numba table form vectorises across output channels (many output channels, or
    small maps of a fixed-size network narrower than the channels are many) rather than along
    a row."""
    many = layer.out_channels >= CHANNELS_FORM_MIN_OUT
    return layer.groups == 1 and (many or (width is not None and width < layer.out_channels))


def _channels_per_pass(layer: Conv2D) -> int:
    """Output channels the rows form computes in one pass over the input rows: each loaded input
    value serves all of them (only without groups, where they all read the same inputs)."""
    if layer.groups != 1:
        return 1
    return next(q for q in (4, 2, 1) if layer.out_channels % q == 0)


def _numba_conv_loops(
    layer: Conv2D, W: str, B: str, first: str, fuse: _Fused | None, target: ConvTarget
) -> list[str]:
    """Per pass of output channels and pair of output rows: the biases, then per input channel
    one pass over the rows that adds each channel's kernel taps in (ky, kx) order in one
    statement, so each row is stored once per input channel rather than once per tap; the
    sum's order is the reference's. PNet's conv 3 -> 10 over 256 x 256: 0.69 ms a channel at a
    time, 0.57 ms two. Two output rows at a time give the processor twice the independent sums
    (each sum is a chain of dependent adds) and share the input rows both read: PNet's conv
    3 -> 10 over a 320 x 240 level, 1.05 -> 0.86 ms. After an odd last row the pair's second
    row goes to a spare row, read from clamped input rows, never stored: one code path (a path
    of its own for that row cost PNet 1.6 s more of cold compile).
    `fuse`: an activation applied to each finished row (the slope read once per row: read in
    the loop, it cost PNet's conv 3 -> 10 more than a pass of its own)."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    q = _channels_per_pass(layer)
    pair = 2 if kh > 1 else 1  # a 1x1 kernel's rows share no input row (and compile slower)
    kernel = [(ky, kx) for ky in range(kh) for kx in range(kw)]
    # the input rows a pass reads, after the output row y's first: both rows' taps
    reads = sorted({i * sh + ky for i in range(pair) for ky in range(kh)})

    def source(r: int) -> str:
        at = offset_index("y", sh, r)
        return at if r < kh else f"min({at}, last_row)"  # r < kh: the first row's, inside

    spare = [f"spare = np.empty(({q}, ow), dtype=out.dtype)", "last_row = xp.shape[1] - 1"]
    lines = [
        *(spare if pair == 2 else []),
        f"for o0 in range(0, {layer.out_channels}, {q}):",
        f"    first = {first}",
        *(f"    b{k} = {B}[o0 + {k}]" for k in range(q)),
        f"    for y in range(0, oh, {pair}):",
    ]
    for k in range(q):
        lines += [
            f"        row{k}_0 = out[o0 + {k}, y]",
            *(
                [f"        row{k}_1 = out[o0 + {k}, y + 1] if y + 1 < oh else spare[{k}]"]
                if pair == 2
                else []
            ),
            "        for j in range(ow):",
            *(f"            row{k}_{i}[j] = b{k}" for i in range(pair)),
        ]
    lines += [
        f"        for c in range({layer.weights.shape[1]}):",
        *(f"            x{r} = xp[first + c, {source(r)}]" for r in reads),
        *(
            f"            w{k}_{ky}_{kx} = {W}[o0 + {k}, c, {ky}, {kx}]"
            for k in range(q)
            for ky, kx in kernel
        ),
        "            for j in range(ow):",
        *(
            f"                v{r}_{kx} = x{r}[{offset_index('j', sw, kx)}]"
            for r in reads
            for kx in range(kw)
        ),
    ]
    for i in range(pair):
        for k in range(q):
            lines += [
                f"                row{k}_{i}[j] = (",
                f"                    row{k}_{i}[j]",
                *(
                    f"                    + w{k}_{ky}_{kx} * v{i * sh + ky}_{kx}"
                    for ky, kx in kernel
                ),
                "                )",
            ]
    if fuse is not None:
        for k in range(q):
            lines += [f"        s{k} = {fuse.slopes}[o0 + {k}]"] if fuse.slopes else []
            for i in range(pair):
                lines += [
                    "        for j in range(ow):",
                    f"            v = row{k}_{i}[j]",
                    *("            " + line for line in fuse.lines(target, "v", f"s{k}")),
                    f"            row{k}_{i}[j] = v",
                ]
    return lines


# Output positions that share each weight the channels form loads (register blocking): the
# weights are read once per block instead of once per position, and the block's sums are
# independent chains the processor overlaps. Measured on ONet's conv 32 -> 64 (21 x 21 outputs):
# 469 us one position at a time, 215 us in blocks of 4 (float32, bit-identical). A fixed-size
# net takes blocks of 3 where they tile its rows with fewer positions computed in vain (RNet's
# conv 28 -> 48 has rows of 9: 9 positions in blocks of 3, 12 in blocks of 4).
POSITIONS_PER_BLOCK = 4
# Lanes of a vector register (AVX-512) per dtype: the channels form pads its output channels to
# whole vectors (zero weights, never stored), or the processor does the rest one at a time
# (RNet's conv 3 -> 28: 30 us per crop with 28 channels, 20 us padded to 32).
LANES = {"float32": 16, "float64": 8}


def _block(width: int | None, vectors: int = 2) -> int:
    """Positions per block for output rows of `width` (None: any width) with `vectors` vectors
    of output channels: one vector's sums go in blocks of up to 8 (twice the independent sums,
    in the registers 4 positions of two vectors take): PNet's conv 10 -> 16, 0.94 -> 0.84-0.88
    ms in blocks of 8; 8 positions of two vectors were slower (PNet's 16 -> 32: 2.49 -> 2.87)."""
    sizes = (8, 4, 3) if vectors == 1 else (POSITIONS_PER_BLOCK, 3)
    if width is None:
        return sizes[0]
    return min(sizes, key=lambda b: (-(-width // b) * b, -b))


def _numba_conv_channels(
    layer: Conv2D,
    WT: str,
    B: str,
    padded: int,
    block: int,
    fuse: _Fused | None,
    target: ConvTarget,
    maps: tuple[bool, bool] = (False, False),
) -> list[str]:
    """Per block of `block` output positions along a row: the bias of every output channel,
    then per input channel one pass over the output channels adding each position's kernel taps
    in (ky, kx) order (the reference's order; positions do not mix). A row's last block may
    hang over its end: those positions read the row's last column (any in-bounds value) and are
    never stored, so one code path serves every block (it compiles faster). The loops run over
    `padded` channels (the tables' zero-padded width); only the layer's channels are stored.
    The block's sums start as the biases and `fuse` applies an activation to them before they
    are stored, each in one loop over the whole block (the biases and slopes repeated per
    position): numba unrolls a loop of 32 channels whole and then keeps it scalar (a branch per
    sum for the activation); over the block both vectorise. RNet's conv 3 -> 28: 25.8 -> 22.2
    us per crop for the activation, then 21.0 -> 17.5 us for the biases. `maps`: whether
    the input and the output are hwc maps (an hwc output stores each position's sums as a
    vector; a (channels, rows, columns) one, one scalar per channel)."""
    (kh, kw), (sh, sw) = layer.kernel, layer.stride
    hwc_in, hwc_out = maps
    width = (block - 1) * sw + kw  # input columns a block reads per kernel row

    def column(u: int) -> str:
        start = offset_index("j0", sw, u)
        return start if u < kw else f"min({start}, last)"  # u < kw: inside for every block

    def tap(ky: int, u: int) -> str:
        return f"r{ky}[{column(u)}, c]" if hwc_in else f"r{ky}[{column(u)}]"

    def taps(p: int) -> str:
        return "".join(
            f"\n                    + w{ky}_{kx} * t{ky}_{p * sw + kx}"
            for ky in range(kh)
            for kx in range(kw)
        )

    activate = (
        [
            f"        for q in range({block * padded}):",
            "            v = sums[q]",
            *([f"            s = {fuse.slopes}[q]"] if fuse.slopes else []),
            *("            " + line for line in fuse.lines(target, "v", "s")),
            "            sums[q] = v",
        ]
        if fuse
        else []
    )
    rows = [f"r{ky} = xp[{'' if hwc_in else 'c, '}{offset_index('y', sh, ky)}]" for ky in range(kh)]
    store = (
        [
            f"        for p in range(min({block}, ow - j0)):",
            "            at = out[y, j0 + p]",
            f"            for o in range({layer.out_channels}):",
            "                at[o] = acc[p, o]",
        ]
        if hwc_out
        else [
            f"        for p in range(min({block}, ow - j0)):",
            f"            for o in range({layer.out_channels}):",
            "                out[o, y, j0 + p] = acc[p, o]",
        ]
    )
    return [
        f"acc = np.empty(({block}, {padded}), dtype=out.dtype)",
        "sums = acc.reshape(-1)",
        f"last = xp.shape[{1 if hwc_in else 2}] - 1",
        "for y in range(oh):",
        *(f"    {line}" for line in rows if hwc_in),
        f"    for j0 in range(0, ow, {block}):",
        f"        for q in range({block * padded}):",
        f"            sums[q] = {B}[q]",
        f"        for c in range({layer.in_channels}):",
        *(f"            {line}" for line in rows if not hwc_in),
        *(f"            t{ky}_{u} = {tap(ky, u)}" for ky in range(kh) for u in range(width)),
        f"            wc = {WT}[c]",
        *(f"            a{p} = acc[{p}]" for p in range(block)),
        f"            for o in range({padded}):",
        *(
            f"                w{ky}_{kx} = wc[{ky}, {kx}, o]"
            for ky in range(kh)
            for kx in range(kw)
        ),
        *(
            line
            for p in range(block)
            for line in (f"                a{p}[o] = (a{p}[o]{taps(p)}", "                )")
        ),
        *activate,
        *store,
    ]


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


def _dense(layer: Dense, prefix: str, target: ConvTarget, layout: str) -> Kernel:
    if layer.activation.name != "identity":
        raise UnsupportedError("a dense layer's activation is a layer of its own here")
    W, B = f"{prefix.upper()}_W", f"{prefix.upper()}_B"
    n, m = layer.n_inputs, layer.n_outputs
    numba = target.name == "numba"
    tables: tuple[tuple[str, str], ...] = ()
    if layout == "table":
        tables = (
            table_source(W, layer.weights, target, per_line=8),
            table_source(B, layer.bias, target, 8),
        )
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
        body = [f"out = np.empty({m}{np_dtype_arg(target)})" if numba else f"out = [0.0] * {m}"]
        for j in range(m):
            terms = [(layer.weights[i, j], f"x[{i}]") for i in range(n)]
            body += _sum_lines(f"out[{j}]", layer.bias[j], terms, target)
    body.append("return out")
    return make_kernel(prefix, tables, body, target, f"dense {n} -> {m}, {layout}")


# -- pooling, flatten, activations ------------------------------------------------------------
