"""The compiler facade for convolutional networks: compile_conv(net, target, layout) -> source."""

from __future__ import annotations

from typing import Any

from templater.conv_kernels import conv_target
from templater.conv_lower import kernels
from templater.convfile import convnet_digest
from templater.convnet import (
    LAYER_KINDS,
    Act,
    Conv2D,
    ConvNetwork,
    Flatten,
    Layer,
    Pool2D,
    PReLU,
)
from templater.network import Dense
from templater.render import KEY_PENDING, render, with_program_key

_TITLES = {
    "python": (
        "pure Python",
        "Pure Python with no imports: copy this one file anywhere and call forward(image).",
    ),
    "numba": (
        "a Numba program",
        "Needs only numpy and numba; each kernel is compiled on first use (cached on disk).",
    ),
}


def compile_conv(
    net: ConvNetwork,
    target: str = "python",
    layout: str = "auto",
    dtype: str = "float64",
    provenance: str = "",
) -> str:
    """The source of a program computing `net.forward` (float32: `net.forward(x, np.float32)`).

    `provenance`: plain text for the docstring (where the weights came from, their licence)."""
    tgt = conv_target(target, dtype)
    block = net_block(net, tgt, layout)
    title, note = _TITLES[target]
    if dtype == "float32":
        title += " in float32"
        note += (
            "\nfloat32: every weight is the float32 nearest to the trained value, and all"
            "\narithmetic is float32."
        )
    context: dict[str, Any] = {
        "python": target == "python",
        "program_key_repr": repr(KEY_PENDING),
        "digest": convnet_digest(net),
        "digest_repr": repr(convnet_digest(net)),
        "target_title": title,
        "target_note": note,
        "provenance": "\n".join(line.rstrip() for line in provenance.strip().splitlines()),
        "imports": "import math\nimport sys\n\nimport numpy as np\nfrom numba import njit"
        if target == "numba"
        else "",
        # Text from the model file reaches the program only through repr().
        "name_repr": repr(net.name),
        "dtype": dtype,
        "dtype_repr": repr(dtype),
        "channels": net.channels,
        "layout_repr": repr(net.input_layout),
        "size_repr": repr(net.size),
        "receptive_repr": repr(net.receptive_field()),
        "heads_repr": repr(tuple(name for name, _ in net.heads)),
        "layers_repr": block["layers_repr"],
        "tables": block["tables"],
        "kernels": block["kernels"],
        "net": block,
    }
    return with_program_key(render(f"conv_{target}.py.j2", context))


def net_block(net: ConvNetwork, target: Any, layout: str, prefix: str = "") -> dict[str, Any]:
    """One net's kernels and what the templates need to call them (names start with `prefix`)."""
    trunk, heads = kernels(net, target, layout, prefix)
    every = trunk + [k for head in heads for k in head]
    shapes = None
    if net.size is not None and target.name == "numba":
        outs = net.shapes((1, net.channels, *net.size))
        shapes = [repr(tuple(int(v) for v in outs[name][1:])) for name, _ in net.heads]
    return {
        "prefix": prefix,
        "kernels": every,
        "trunk": trunk,
        "heads": heads,
        "tables": [t for k in every for t in k.tables],
        "table_params": "".join(f", {name}" for k in every for name in k.table_names),
        "batch_shapes": shapes,
        "layers_repr": _layers_literal(net, [k.description for k in every]),
    }


def describe_layer(layer: Layer) -> dict[str, Any]:
    """A layer as plain data (kinds and sizes; no weights, no model-file text)."""
    out: dict[str, Any] = {"kind": LAYER_KINDS[type(layer)]}
    if isinstance(layer, Conv2D):
        out.update(
            in_channels=layer.in_channels,
            out_channels=layer.out_channels,
            kernel=layer.kernel,
            stride=layer.stride,
            padding=layer.padding,
            groups=layer.groups,
        )
    elif isinstance(layer, Pool2D):
        out.update(
            pool=layer.kind,
            kernel=layer.kernel,
            stride=layer.stride,
            padding=layer.padding,
            ceil_mode=layer.ceil_mode,
        )
    elif isinstance(layer, Dense):
        out.update(inputs=layer.n_inputs, outputs=layer.n_outputs)
    elif isinstance(layer, PReLU):
        out.update(channels=int(layer.slopes.size))
    elif isinstance(layer, Act):
        out.update(activation=layer.activation.name)
    elif isinstance(layer, Flatten):
        out.update(order=layer.order)
    return out


def _layers_literal(net: ConvNetwork, forms: list[str]) -> str:
    """LAYERS: one dict per layer with where it sits (trunk or head index) and its form."""
    rows = []
    for (where, index, layer), form in zip(net.layers(), forms, strict=True):
        d = describe_layer(layer)
        d["part"] = where if where == "trunk" else "head"
        if where != "trunk":
            d["head"] = [n for n, _ in net.heads].index(where)
        d["index"] = index
        d["form"] = form.rsplit(", ", 1)[-1] if d["kind"] in ("conv2d", "dense") else "loops"
        rows.append("    " + repr(dict(sorted(d.items()))) + ",")
    return "(\n" + "\n".join(rows) + "\n)"
