"""ONNX importer for convolutional graphs: a trunk that may branch into named heads -> ConvNetwork.

Every tensor is followed as the sequence of layers that computes it from the one graph input;
the graph outputs are the heads, and their longest shared prefix is the trunk. A Transpose to
NCHW right after the input makes the network take HWC images (Keras exports); a Transpose back to
NHWC before Flatten or Softmax sets the flatten order or the softmax axis. BatchNormalization is
folded into the conv or dense layer before it; a MatMul followed by an Add of a constant is one
dense layer. Anything else is refused, naming the node.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

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
from templater.errors import MalformedModelError, UnsupportedError
from templater.fileio import read_bounded
from templater.importers.onnx import MAX_FILE_BYTES, _Reader, parse
from templater.network import Activation, Dense

CONV_OPS = frozenset({"Conv", "MaxPool", "AveragePool", "GlobalAveragePool", "PRelu"})
# op -> attributes it may carry; any other attribute is refused by name.
SUPPORTED: dict[str, frozenset[str]] = {
    "Conv": frozenset({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"}),
    "MaxPool": frozenset(
        {"auto_pad", "ceil_mode", "dilations", "kernel_shape", "pads", "storage_order", "strides"}
    ),
    "AveragePool": frozenset(
        {
            "auto_pad",
            "ceil_mode",
            "count_include_pad",
            "dilations",
            "kernel_shape",
            "pads",
            "strides",
        }
    ),
    "GlobalAveragePool": frozenset(),
    "PRelu": frozenset(),
    "Relu": frozenset(),
    "LeakyRelu": frozenset({"alpha"}),
    "Sigmoid": frozenset(),
    "Tanh": frozenset(),
    "Softmax": frozenset({"axis"}),
    "BatchNormalization": frozenset({"epsilon", "momentum", "training_mode", "spatial"}),
    "Transpose": frozenset({"perm"}),
    "Flatten": frozenset({"axis"}),
    "Reshape": frozenset({"allowzero"}),
    "MatMul": frozenset(),
    "Gemm": frozenset({"alpha", "beta", "transA", "transB"}),
    "Add": frozenset(),
    "Identity": frozenset(),
    "Dropout": frozenset({"ratio", "seed"}),
    "Constant": frozenset({"value", "value_float", "value_floats", "value_int", "value_ints"}),
}
_TO_NCHW, _TO_NHWC = [0, 3, 1, 2], [0, 2, 3, 1]


def is_convolutional(model: Any) -> bool:
    return any(node.op_type in CONV_OPS for node in model.graph.node)


def from_onnx_conv(path: str | os.PathLike, name: str = "") -> ConvNetwork:
    where = str(path)
    model = parse(read_bounded(path, MAX_FILE_BYTES, "ONNX"), where)
    return convnet_from_model(model, where, name=name)


class _Value:
    """A tensor: the layers from the input to it, and its layout (nchw, nhwc, vector)."""

    def __init__(self, layers: tuple[Layer, ...], layout: str) -> None:
        self.layers, self.layout = layers, layout


def convnet_from_model(model: Any, where: str = "<onnx>", name: str = "") -> ConvNetwork:
    reader = _Reader(model, where)
    input_name, _, dims = reader._input()
    if len(dims) != 4:
        raise UnsupportedError(f"{where}: input {input_name!r} has rank {len(dims)}; expected 4")
    values: dict[str, _Value] = {input_name: _Value((), "input")}
    input_layout = None
    for index, node in enumerate(model.graph.node):
        if node.op_type == "Constant":
            continue
        label = f"node {index} {node.op_type!r} (name {node.name!r})"
        _check_node(node, label, where)
        data = [n for n in node.input if n and n in values]
        if len(data) != 1:
            raise UnsupportedError(
                f"{where}: {label} combines {len(data)} computed tensors; only chains that "
                "branch into heads are supported"
            )
        value = values[data[0]]
        if value.layout == "input":
            input_layout, value = _first_node(node, label, where, dims)
            if value is None:  # the input goes straight into a layer: chw images
                value = _Value((), "nchw")
            else:
                values[node.output[0]] = value
                continue
        values[node.output[0]] = _Step(reader, node, label, where).apply(value)
    heads = []
    for out in model.graph.output:
        if out.name not in values:
            raise UnsupportedError(f"{where}: output {out.name!r} is not computed from the input")
        heads.append((out.name, values[out.name].layers))
    trunk = _common_prefix([layers for _, layers in heads])
    size = None
    if any(isinstance(x, (Flatten, Dense)) for _, layers in heads for x in layers):
        spatial = (dims[1], dims[2]) if input_layout == "hwc" else (dims[2], dims[3])
        if None in spatial:
            raise UnsupportedError(f"{where}: a network that flattens needs a fixed input size")
        size = spatial
    channels = dims[3] if input_layout == "hwc" else dims[1]
    if channels is None:
        raise UnsupportedError(f"{where}: the input's channel count is not declared")
    return ConvNetwork(
        channels=channels,
        trunk=trunk,
        heads=tuple((n, layers[len(trunk) :]) for n, layers in heads),
        size=size,
        input_layout=input_layout or "chw",
        name=name,
        metadata={"source": "onnx"},
    )


def _check_node(node: Any, label: str, where: str) -> None:
    if node.domain not in ("", "ai.onnx") or node.op_type not in SUPPORTED:
        raise UnsupportedError(
            f"{where}: {label} is not supported; supported ops: {', '.join(sorted(SUPPORTED))}"
        )
    extra = sorted(a.name for a in node.attribute if a.name not in SUPPORTED[node.op_type])
    if extra:
        raise UnsupportedError(f"{where}: {label}: unsupported attribute(s) {extra}")


def _first_node(node: Any, label: str, where: str, dims: tuple) -> tuple[str, _Value | None]:
    """How the graph reads its input: a Transpose NHWC -> NCHW means HWC images."""
    if node.op_type == "Transpose":
        perm = list(_attrs(node).get("perm", []))
        if perm != _TO_NCHW:
            raise UnsupportedError(f"{where}: {label}: input transpose {perm} is not NHWC->NCHW")
        return "hwc", _Value((), "nchw")
    return "chw", None


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _common_prefix(sequences: list[tuple[Layer, ...]]) -> tuple[Layer, ...]:
    prefix: list[Layer] = []
    for layers in zip(*sequences, strict=False):
        if all(x is layers[0] for x in layers):
            prefix.append(layers[0])
        else:
            break
    # A head needs at least one layer of its own.
    while prefix and any(len(s) == len(prefix) for s in sequences):
        prefix.pop()
    return tuple(prefix)


class _Step:
    """One node applied to a value: a new layer, or a change of layout or of the last layer."""

    def __init__(self, reader: _Reader, node: Any, label: str, where: str) -> None:
        self.reader, self.node, self.label, self.where = reader, node, label, where
        self.attrs = _attrs(node)

    def fail(self, why: str) -> UnsupportedError:
        return UnsupportedError(f"{self.where}: {self.label}: {why}")

    def const(self, position: int) -> np.ndarray:
        if len(self.node.input) <= position or not self.node.input[position]:
            raise MalformedModelError(f"{self.where}: {self.label}: input {position} is missing")
        return np.asarray(self.reader.constant(self.node.input[position], self.label), np.float64)

    def apply(self, value: _Value) -> _Value:
        op = self.node.op_type
        handler = getattr(self, f"_{op.lower()}")
        return handler(value)

    def _add_layer(self, value: _Value, layer: Layer, layout: str | None = None) -> _Value:
        return _Value((*value.layers, layer), layout or value.layout)

    def _need_maps(self, value: _Value) -> None:
        if value.layout != "nchw":
            raise self.fail(f"expects NCHW feature maps, gets a {value.layout} tensor")

    # -- convolution and pooling -------------------------------------------------------------
    def _conv(self, value: _Value) -> _Value:
        self._need_maps(value)
        w = self.const(1)
        if w.ndim != 4:
            raise self.fail(f"only 2-D convolution is supported (weights of rank {w.ndim})")
        if any(d != 1 for d in self.attrs.get("dilations", [1, 1])):
            raise self.fail(f"dilations {self.attrs['dilations']} (only 1 is supported)")
        kernel = self.attrs.get("kernel_shape")
        if kernel is not None and list(kernel) != list(w.shape[2:]):
            raise self.fail(f"kernel_shape {list(kernel)} disagrees with weights {w.shape}")
        bias = self.const(2) if len(self.node.input) > 2 and self.node.input[2] else None
        if bias is None:
            bias = np.zeros(w.shape[0])
        if bias.shape != (w.shape[0],):
            raise self.fail(f"bias of shape {bias.shape} for {w.shape[0]} output channels")
        layer = Conv2D(
            weights=w,
            bias=bias,
            stride=tuple(self.attrs.get("strides", [1, 1])),
            padding=self._padding(),
            groups=int(self.attrs.get("group", 1)),
            name=self.node.name,
        )
        return self._add_layer(value, layer)

    def _padding(self) -> tuple[int, int, int, int] | str:
        auto = self.attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            return auto.lower()
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto != "NOTSET":
            raise self.fail(f"auto_pad {auto!r}")
        pads = list(self.attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            raise self.fail(f"pads {pads} (expected 4 values for a 2-D op)")
        return (pads[0], pads[1], pads[2], pads[3])  # ONNX: begins then ends

    def _pool(self, value: _Value, kind: str) -> _Value:
        self._need_maps(value)
        kernel = self.attrs.get("kernel_shape")
        if kernel is None or len(kernel) != 2:
            raise self.fail(f"kernel_shape {kernel} (only 2-D pooling is supported)")
        if any(d != 1 for d in self.attrs.get("dilations", [1, 1])):
            raise self.fail(f"dilations {self.attrs['dilations']} (only 1 is supported)")
        if self.attrs.get("storage_order", 0) != 0:
            raise self.fail("storage_order 1 (an argmax output) is not supported")
        if len(self.node.output) > 1 and self.node.output[1]:
            raise self.fail("the indices output is not supported")
        layer = Pool2D(
            kind=kind,
            kernel=tuple(kernel),
            stride=tuple(self.attrs.get("strides", [1, 1])),
            padding=self._padding(),
            ceil_mode=bool(self.attrs.get("ceil_mode", 0)),
            count_include_pad=bool(self.attrs.get("count_include_pad", 0)),
            name=self.node.name,
        )
        return self._add_layer(value, layer)

    def _maxpool(self, value: _Value) -> _Value:
        return self._pool(value, "max")

    def _averagepool(self, value: _Value) -> _Value:
        return self._pool(value, "avg")

    def _globalaveragepool(self, value: _Value) -> _Value:
        self._need_maps(value)
        return self._add_layer(value, GlobalAvgPool(name=self.node.name))

    # -- activations -------------------------------------------------------------------------
    def _prelu(self, value: _Value) -> _Value:
        slopes = self.const(1)
        if value.layout == "nhwc":
            raise self.fail("PRelu on NHWC tensors is not supported")
        if slopes.ndim and any(d != 1 for d in slopes.shape[1 if slopes.ndim == 4 else 0 :][1:]):
            raise self.fail(f"slopes of shape {slopes.shape}: one slope per channel expected")
        channels = self._channels(value)
        flat = slopes.reshape(-1)
        if flat.size == 1:
            flat = np.repeat(flat, channels)
        if flat.size != channels:
            raise self.fail(f"{flat.size} slopes for {channels} channels")
        return self._add_layer(value, PReLU(flat, name=self.node.name))

    def _channels(self, value: _Value) -> int:
        for layer in reversed(value.layers):
            if isinstance(layer, Conv2D):
                return layer.out_channels
            if isinstance(layer, Dense):
                return layer.n_outputs
        raise self.fail("cannot tell the channel count here")

    def _act(self, value: _Value, name: str, **params: float) -> _Value:
        if value.layout == "nhwc":
            raise self.fail("activations on NHWC tensors are not supported")
        return self._add_layer(value, Act(Activation(name, **params), name=self.node.name))

    def _relu(self, value: _Value) -> _Value:
        return self._act(value, "relu")

    def _leakyrelu(self, value: _Value) -> _Value:
        return self._act(value, "leaky_relu", alpha=float(self.attrs.get("alpha", 0.01)))

    def _sigmoid(self, value: _Value) -> _Value:
        return self._act(value, "sigmoid")

    def _tanh(self, value: _Value) -> _Value:
        return self._act(value, "tanh")

    def _softmax(self, value: _Value) -> _Value:
        axis = int(self.attrs.get("axis", -1 if self.reader.opset >= 13 else 1))
        rank = 2 if value.layout == "vector" else 4
        axis %= rank
        channel_axis = {"nchw": 1, "nhwc": 3, "vector": 1}[value.layout]
        if axis != channel_axis:
            raise self.fail(f"softmax over axis {axis} of a {value.layout} tensor (only channels)")
        return _Value(
            (*value.layers, Act(Activation("softmax"), name=self.node.name)),
            "nchw" if value.layout == "nhwc" else value.layout,
        )

    def _batchnormalization(self, value: _Value) -> _Value:
        scale, offset, mean, var = (self.const(i) for i in (1, 2, 3, 4))
        eps = float(self.attrs.get("epsilon", 1e-5))
        factor = scale / np.sqrt(var + eps)
        last = value.layers[-1] if value.layers else None
        if isinstance(last, Conv2D):
            folded = replace(
                last,
                weights=last.weights * factor[:, None, None, None],
                bias=(last.bias - mean) * factor + offset,
            )
        elif isinstance(last, Dense):
            folded = replace(
                last,
                weights=last.weights * factor[None, :],
                bias=(last.bias - mean) * factor + offset,
            )
        else:
            raise self.fail("BatchNormalization must follow a Conv or a dense layer to be folded")
        return _Value((*value.layers[:-1], folded), value.layout)

    # -- layout ------------------------------------------------------------------------------
    def _transpose(self, value: _Value) -> _Value:
        perm = list(self.attrs.get("perm", []))
        if value.layout == "nchw" and perm == _TO_NHWC:
            return _Value(value.layers, "nhwc")
        if value.layout == "nhwc" and perm == _TO_NCHW:
            return _Value(value.layers, "nchw")
        raise self.fail(f"transpose {perm} of a {value.layout} tensor")

    def _flatten(self, value: _Value) -> _Value:
        if int(self.attrs.get("axis", 1)) != 1:
            raise self.fail(f"flatten axis {self.attrs.get('axis')} (only 1)")
        if value.layout == "vector":
            return value
        order = "hwc" if value.layout == "nhwc" else "chw"
        return self._add_layer(value, Flatten(order, name=self.node.name), "vector")

    def _reshape(self, value: _Value) -> _Value:
        shape = [int(v) for v in self.const(1).reshape(-1)]
        if len(shape) != 2 or shape[0] not in (0, 1, -1) or (shape[0] == -1 and shape[1] == -1):
            raise self.fail(f"reshape to {shape}: only a flatten to (N, -1) is supported")
        return self._flatten(value)

    # -- dense -------------------------------------------------------------------------------
    def _matmul(self, value: _Value) -> _Value:
        if value.layout != "vector":
            raise self.fail("MatMul needs a flattened input")
        w = self.const(1)
        if w.ndim != 2:
            raise self.fail(f"weights of shape {w.shape}")
        layer = Dense(weights=w, bias=np.zeros(w.shape[1]), name=self.node.name)
        return self._add_layer(value, layer)

    def _gemm(self, value: _Value) -> _Value:
        if value.layout != "vector" or self.attrs.get("transA", 0):
            raise self.fail("Gemm needs a flattened input (and transA 0)")
        w = self.const(1) * float(self.attrs.get("alpha", 1.0))
        if self.attrs.get("transB", 0):
            w = w.T
        bias = np.zeros(w.shape[1])
        if len(self.node.input) > 2 and self.node.input[2]:
            bias = np.broadcast_to(
                self.const(2).reshape(-1) * float(self.attrs.get("beta", 1.0)), (w.shape[1],)
            )
        return self._add_layer(value, Dense(weights=w, bias=bias, name=self.node.name))

    def _add(self, value: _Value) -> _Value:
        last = value.layers[-1] if value.layers else None
        constant = [n for n in self.node.input if n and self.reader._is_constant(n)]
        if not isinstance(last, Dense) or not constant or np.any(last.bias):
            raise self.fail("Add is supported only as the bias of a MatMul")
        bias = np.broadcast_to(
            self.const(list(self.node.input).index(constant[0])).reshape(-1), last.bias.shape
        )
        return _Value((*value.layers[:-1], replace(last, bias=bias)), value.layout)

    def _identity(self, value: _Value) -> _Value:
        return value

    _dropout = _identity
