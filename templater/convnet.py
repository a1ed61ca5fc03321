"""ConvNetwork: convolutional layers over feature maps, named heads, and their numpy reference.

Feature maps are (channels, rows, columns) arrays. The reference fixes every summation order, so
programs that keep it agree bit for bit where no exp/tanh is involved:
- Conv2D: each output starts at its bias and adds `w[o, c, ky, kx] * x[c, y*s + ky, x*s + kx]`
  for c = 0, 1, ... (the channels of its group), then ky, then kx ascending (zero padding).
- MaxPool2D: the first tap of the window, then each later tap (ky, then kx) replaces the
  running maximum when strictly greater; padding is -inf, never chosen over a real value.
- AvgPool2D: 0.0 plus the taps in (ky, kx) order, divided by the tap count (the window's size
  with count_include_pad, else the taps inside the image).
- GlobalAvgPool: 0.0 plus x[c, y, x] in row-major order, divided by rows * columns.
- Flatten: `chw` (ONNX's NCHW order) or `hwc` (after a transpose to NHWC, as Keras exports do).
- Softmax over channels: exp(h - max), summed over channels left to right, each divided by it.
Dense layers after a Flatten are templater.network.Dense (input-major order).
A network is a trunk plus one or more named heads, each a sequence of layers on the trunk's
output. With no Flatten it is fully convolutional: it takes any image at least its receptive
field in size and every head returns a map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from templater.errors import MalformedModelError, TooLargeError, UnsupportedError, UsageError
from templater.network import (
    MAX_ABS_WEIGHT,
    MAX_PARAMETERS,
    Activation,
    Dense,
    _float_array,
    _reference_dtype,
)

MAX_LAYERS = 64
# A conv kernel side above this is no detector template we know of; it bounds unrolled code.
MAX_KERNEL = 15
PADDING_MODES = ("same_upper", "same_lower")
FLATTEN_ORDERS = ("chw", "hwc")
INPUT_LAYOUTS = ("chw", "hwc")


def _pair(value: Any, what: str, minimum: int = 1) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (value, value)
    try:
        a, b = (int(v) for v in value)
    except (TypeError, ValueError):
        raise MalformedModelError(f"{what} must be two integers, got {value!r}") from None
    if a < minimum or b < minimum:
        raise MalformedModelError(f"{what} must be at least {minimum}, got {(a, b)}")
    return a, b


def _padding(value: Any, what: str) -> tuple[int, int, int, int] | str:
    """(top, left, bottom, right), or a mode resolved per input size (ONNX auto_pad)."""
    if isinstance(value, str):
        if value not in PADDING_MODES:
            raise UnsupportedError(
                f"{what}: padding mode {value!r} is not supported; use explicit padding or "
                f"one of {', '.join(PADDING_MODES)}"
            )
        return value
    try:
        pads = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise MalformedModelError(f"{what}: padding must be 4 integers, got {value!r}") from None
    if len(pads) != 4 or min(pads) < 0:
        raise MalformedModelError(f"{what}: padding must be 4 integers >= 0, got {value!r}")
    return pads  # type: ignore[return-value]


def resolve_padding(
    padding: tuple[int, int, int, int] | str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    size: tuple[int, int],
) -> tuple[int, int, int, int]:
    """Explicit (top, left, bottom, right) padding for an input of `size` (rows, columns)."""
    if not isinstance(padding, str):
        return padding
    begin, end = [], []
    for n, k, s in zip(size, kernel, stride, strict=True):
        total = max((math.ceil(n / s) - 1) * s + k - n, 0)
        small, large = total // 2, total - total // 2
        begin.append(small if padding == "same_upper" else large)
        end.append(large if padding == "same_upper" else small)
    return (begin[0], begin[1], end[0], end[1])


def output_size(
    n: int, k: int, s: int, pad_begin: int, pad_end: int, ceil_mode: bool = False
) -> int:
    """Outputs along one axis; with ceil_mode the last window must start inside the input or
    its leading padding (ONNX and PyTorch)."""
    span = n + pad_begin + pad_end - k
    if span < 0:
        return 0
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= n + pad_begin:
        out -= 1
    return out


@dataclass(frozen=True, eq=False)
class Conv2D:
    """out[o] = bias[o] + sum over (c, ky, kx) of weights[o, c, ky, kx] * x[g*Cg + c, ...]."""

    weights: np.ndarray  # (out_channels, in_channels // groups, kh, kw)
    bias: np.ndarray  # (out_channels,)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int, int, int] | str = (0, 0, 0, 0)
    groups: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        where = f"conv {self.name!r}" if self.name else "conv"
        w = _float_array(self.weights, f"{where} weights", ndim=4)
        b = _float_array(self.bias, f"{where} bias", ndim=1)
        if b.shape[0] != w.shape[0]:
            raise MalformedModelError(
                f"{where}: bias has {b.shape[0]} values for {w.shape[0]} output channels"
            )
        if 0 in w.shape:
            raise MalformedModelError(f"{where} is empty: weights have shape {w.shape}")
        if max(w.shape[2:]) > MAX_KERNEL:
            raise TooLargeError(f"{where}: kernel {w.shape[2:]} exceeds {MAX_KERNEL}")
        groups = int(self.groups)
        if groups < 1 or w.shape[0] % groups:
            raise MalformedModelError(
                f"{where}: {w.shape[0]} output channels do not split into {groups} groups"
            )
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "groups", groups)
        object.__setattr__(self, "stride", _pair(self.stride, f"{where} stride"))
        object.__setattr__(self, "padding", _padding(self.padding, where))

    @property
    def in_channels(self) -> int:
        return int(self.weights.shape[1]) * self.groups

    @property
    def out_channels(self) -> int:
        return int(self.weights.shape[0])

    @property
    def kernel(self) -> tuple[int, int]:
        return int(self.weights.shape[2]), int(self.weights.shape[3])

    def apply(self, h: np.ndarray) -> np.ndarray:
        """(N, C, H, W) -> (N, O, OH, OW) in the float type of h, in the documented order."""
        w, b = self.weights.astype(h.dtype), self.bias.astype(h.dtype)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        pads = resolve_padding(self.padding, self.kernel, self.stride, h.shape[2:])
        hp = _pad(h, pads, 0.0)
        oh = output_size(h.shape[2], kh, sh, pads[0], pads[2])
        ow = output_size(h.shape[3], kw, sw, pads[1], pads[3])
        per_group_in, per_group_out = w.shape[1], self.out_channels // self.groups
        acc = np.empty((h.shape[0], self.out_channels, oh, ow), dtype=h.dtype)
        acc[...] = b[None, :, None, None]
        for o in range(self.out_channels):
            first = (o // per_group_out) * per_group_in
            for c in range(per_group_in):
                for ky in range(kh):
                    for kx in range(kw):
                        taps = hp[:, first + c, ky : ky + sh * oh : sh, kx : kx + sw * ow : sw]
                        acc[:, o] += w[o, c, ky, kx] * taps
        return acc


@dataclass(frozen=True)
class Pool2D:
    """Max or average over windows (kind `max` or `avg`)."""

    kind: str
    kernel: tuple[int, int]
    stride: tuple[int, int] | None = None  # None: the kernel size
    padding: tuple[int, int, int, int] | str = (0, 0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = False
    name: str = ""

    def __post_init__(self) -> None:
        where = f"{self.kind} pool {self.name!r}" if self.name else f"{self.kind} pool"
        if self.kind not in ("max", "avg"):
            raise UnsupportedError(f"pool kind {self.kind!r}; supported: max, avg")
        kernel = _pair(self.kernel, f"{where} kernel")
        if max(kernel) > MAX_KERNEL:
            raise TooLargeError(f"{where}: kernel {kernel} exceeds {MAX_KERNEL}")
        object.__setattr__(self, "kernel", kernel)
        stride = kernel if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, f"{where} stride"))
        pads = _padding(self.padding, where)
        if not isinstance(pads, str) and (
            max(pads[0], pads[2]) >= kernel[0] or max(pads[1], pads[3]) >= kernel[1]
        ):
            raise MalformedModelError(f"{where}: padding {pads} must be smaller than the kernel")
        object.__setattr__(self, "padding", pads)
        object.__setattr__(self, "ceil_mode", bool(self.ceil_mode))
        object.__setattr__(self, "count_include_pad", bool(self.count_include_pad))

    def geometry(self, size: tuple[int, int]) -> tuple[tuple[int, int, int, int], int, int]:
        """Explicit padding and the output rows and columns for an input of `size`."""
        pads = resolve_padding(self.padding, self.kernel, self.stride, size)
        oh = output_size(size[0], self.kernel[0], self.stride[0], pads[0], pads[2], self.ceil_mode)
        ow = output_size(size[1], self.kernel[1], self.stride[1], pads[1], pads[3], self.ceil_mode)
        return pads, oh, ow

    def apply(self, h: np.ndarray) -> np.ndarray:
        (kh, kw), (sh, sw) = self.kernel, self.stride
        pads, oh, ow = self.geometry(h.shape[2:])
        # Past the padding, ceil mode may reach further still: pad enough for every window.
        extra_h = max((oh - 1) * sh + kh - (h.shape[2] + pads[0] + pads[2]), 0)
        extra_w = max((ow - 1) * sw + kw - (h.shape[3] + pads[1] + pads[3]), 0)
        full = (pads[0], pads[1], pads[2] + extra_h, pads[3] + extra_w)
        f = h.dtype.type
        if self.kind == "max":
            hp = _pad(h, full, -np.inf)
            out = None
            for ky in range(kh):
                for kx in range(kw):
                    tap = hp[:, :, ky : ky + sh * oh : sh, kx : kx + sw * ow : sw]
                    out = tap.copy() if out is None else np.where(tap > out, tap, out)
            return out
        hp = _pad(h, full, 0.0)
        total = np.zeros((h.shape[0], h.shape[1], oh, ow), dtype=h.dtype)
        for ky in range(kh):
            for kx in range(kw):
                total = total + hp[:, :, ky : ky + sh * oh : sh, kx : kx + sw * ow : sw]
        return total / self.counts(h.shape[2:]).astype(h.dtype)[None, None].astype(f)

    def counts(self, size: tuple[int, int]) -> np.ndarray:
        """Each average window's divisor, (rows, columns)."""
        (kh, kw), (sh, sw) = self.kernel, self.stride
        pads, oh, ow = self.geometry(size)
        rows = np.empty(oh, dtype=np.int64)
        cols = np.empty(ow, dtype=np.int64)
        for axis, (n, k, s, begin, end, out) in enumerate(
            ((size[0], kh, sh, pads[0], pads[2], rows), (size[1], kw, sw, pads[1], pads[3], cols))
        ):
            del axis
            for i in range(out.size):
                start = i * s - begin
                lo, hi = start, start + k
                if self.count_include_pad:  # padded cells count, cells past the padding do not
                    lo, hi = max(lo, -begin), min(hi, n + end)
                else:
                    lo, hi = max(lo, 0), min(hi, n)
                out[i] = hi - lo
        return (rows[:, None] * cols[None, :]).astype(np.float64)


@dataclass(frozen=True)
class GlobalAvgPool:
    name: str = ""

    def apply(self, h: np.ndarray) -> np.ndarray:
        total = np.zeros(h.shape[:2], dtype=h.dtype)
        for y in range(h.shape[2]):
            for x in range(h.shape[3]):
                total = total + h[:, :, y, x]
        return (total / h.dtype.type(h.shape[2] * h.shape[3]))[:, :, None, None]


@dataclass(frozen=True, eq=False)
class PReLU:
    """x if x > 0 else slopes[c] * x, one slope per channel (NaN -> slope * NaN = NaN)."""

    slopes: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        where = f"prelu {self.name!r}" if self.name else "prelu"
        object.__setattr__(self, "slopes", _float_array(self.slopes, f"{where} slopes", ndim=1))

    def apply(self, h: np.ndarray) -> np.ndarray:
        a = self.slopes.astype(h.dtype)
        shape = (1, -1) + (1,) * (h.ndim - 2)
        return np.where(h > h.dtype.type(0.0), h, a.reshape(shape) * h)


@dataclass(frozen=True)
class Act:
    """An elementwise activation (templater.network.Activation) on maps or vectors; `softmax`
    is over channels."""

    activation: Activation
    name: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.activation, str):
            object.__setattr__(self, "activation", Activation(self.activation))

    def apply(self, h: np.ndarray) -> np.ndarray:
        if self.activation.name == "softmax":
            return channel_softmax(h)
        shape = h.shape
        return self.activation.apply(h.reshape(shape[0], -1)).reshape(shape)


def channel_softmax(h: np.ndarray) -> np.ndarray:
    """Softmax over axis 1, the sum of exps taken over channels left to right."""
    e = np.exp(h - h.max(axis=1, keepdims=True))
    total = np.zeros_like(e[:, :1])
    for c in range(e.shape[1]):
        total = total + e[:, c : c + 1]
    return e / total


@dataclass(frozen=True)
class Flatten:
    order: str = "chw"
    name: str = ""

    def __post_init__(self) -> None:
        if self.order not in FLATTEN_ORDERS:
            raise UnsupportedError(f"flatten order {self.order!r}; supported: chw, hwc")

    def apply(self, h: np.ndarray) -> np.ndarray:
        if self.order == "hwc":
            h = h.transpose(0, 2, 3, 1)
        return np.ascontiguousarray(h).reshape(h.shape[0], -1)


Layer = Conv2D | Pool2D | GlobalAvgPool | PReLU | Act | Flatten | Dense
LAYER_KINDS = {
    Conv2D: "conv2d",
    Pool2D: "pool2d",
    GlobalAvgPool: "global_avg_pool",
    PReLU: "prelu",
    Act: "activation",
    Flatten: "flatten",
    Dense: "dense",
}


def apply_layer(layer: Layer, h: np.ndarray) -> np.ndarray:
    if isinstance(layer, Dense):
        if h.ndim != 2:
            raise MalformedModelError("a dense layer needs a Flatten before it")
        return layer.apply(h, exact=True)
    return layer.apply(h)


@dataclass(frozen=True, eq=False)
class ConvNetwork:
    """A trunk and named heads over an image of `channels`; `size` (rows, columns) is fixed
    when a head flattens, else None (any size at least the receptive field)."""

    channels: int
    trunk: tuple[Layer, ...]
    heads: tuple[tuple[str, tuple[Layer, ...]], ...]
    size: tuple[int, int] | None = None
    input_layout: str = "chw"
    name: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "trunk", tuple(self.trunk))
        object.__setattr__(
            self, "heads", tuple((str(n), tuple(layers)) for n, layers in self.heads)
        )
        if self.input_layout not in INPUT_LAYOUTS:
            raise UnsupportedError(f"input layout {self.input_layout!r}; supported: chw, hwc")
        if not self.heads:
            raise MalformedModelError("a network needs at least one head")
        names = [n for n, _ in self.heads]
        if len(set(names)) != len(names) or not all(names):
            raise MalformedModelError(f"head names must be distinct and non-empty: {names!r}")
        if self.size is not None:
            object.__setattr__(self, "size", _pair(self.size, "input size"))
        count = len(self.trunk) + sum(len(layers) for _, layers in self.heads)
        if count > MAX_LAYERS:
            raise TooLargeError(f"network has {count} layers; the limit is {MAX_LAYERS}")
        if self.n_parameters > MAX_PARAMETERS:
            raise TooLargeError(
                f"network has {self.n_parameters:,} parameters; the limit is {MAX_PARAMETERS:,}"
            )
        self._check_shapes()

    # -- structure ---------------------------------------------------------------------------
    def layers(self) -> list[tuple[str, int, Layer]]:
        """(where, index, layer) for the trunk ('trunk') and each head (its name)."""
        out = [("trunk", i, layer) for i, layer in enumerate(self.trunk)]
        for name, layers in self.heads:
            out += [(name, i, layer) for i, layer in enumerate(layers)]
        return out

    @property
    def n_parameters(self) -> int:
        total = 0
        for _, _, layer in self.layers():
            for attr in ("weights", "bias", "slopes"):
                value = getattr(layer, attr, None)
                if isinstance(value, np.ndarray):
                    total += value.size
        return total

    @property
    def architecture(self) -> str:
        """Like `conv 3-10-16-32` (the output channels or units of each conv and dense layer)."""
        widths = [str(self.channels)] + [
            str(layer.out_channels if isinstance(layer, Conv2D) else layer.n_outputs)
            for layer in self.trunk
            if isinstance(layer, (Conv2D, Dense))
        ]
        return "conv " + "-".join(widths)

    @property
    def fully_convolutional(self) -> bool:
        return not any(isinstance(layer, (Flatten, Dense)) for _, _, layer in self.layers())

    def _check_shapes(self) -> None:
        """Chain channel counts (and, with a fixed size, every shape) through the layers."""
        for where, index, layer in self.layers():
            for attr in ("weights", "bias", "slopes"):
                value = getattr(layer, attr, None)
                if isinstance(value, np.ndarray) and np.abs(value).max() > MAX_ABS_WEIGHT:
                    raise MalformedModelError(
                        f"{where} layer {index} {attr}: values exceed |w| <= {MAX_ABS_WEIGHT:g}"
                    )
        probe = (1, self.channels) + (self.size or self.receptive_field())
        self.shapes(probe)
        if self.size is None and not self.fully_convolutional:
            raise MalformedModelError("a network that flattens needs a fixed input size")

    def receptive_field(self) -> tuple[int, int]:
        """The smallest input (rows, columns) that gives every head at least one output (the
        padding counts: a padded 3x3 window fits on a 2x2 image)."""
        need = [1, 1]
        for _, _, layer in reversed(self._path_longest()):
            if isinstance(layer, (Conv2D, Pool2D)):
                for axis in (0, 1):
                    k, s = layer.kernel[axis], layer.stride[axis]
                    pad = 0
                    if not isinstance(layer.padding, str):
                        pad = layer.padding[axis] + layer.padding[axis + 2]
                    if isinstance(layer.padding, str):  # same_*: ceil(n / s) outputs
                        need[axis] = (need[axis] - 1) * s + 1
                    else:
                        need[axis] = max((need[axis] - 1) * s + k - pad, 1)
        return need[0], need[1]

    def _path_longest(self) -> list[tuple[str, int, Layer]]:
        longest = max(self.heads, key=lambda h: sum(isinstance(x, (Conv2D, Pool2D)) for x in h[1]))
        return [("trunk", i, x) for i, x in enumerate(self.trunk)] + [
            (longest[0], i, x) for i, x in enumerate(longest[1])
        ]

    def shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        """Each head's output shape for an (N, C, H, W) input; raises naming the layer where
        shapes do not chain or the image is too small."""
        trunk_shape = self._chain("trunk", self.trunk, tuple(input_shape))
        return {name: self._chain(name, layers, trunk_shape) for name, layers in self.heads}

    def _chain(self, where: str, layers: tuple[Layer, ...], shape: tuple[int, ...]):
        for index, layer in enumerate(layers):
            label = f"{where} layer {index} ({LAYER_KINDS[type(layer)]})"
            if isinstance(layer, Dense):
                if len(shape) != 2 or shape[1] != layer.n_inputs:
                    raise MalformedModelError(
                        f"{label} expects {layer.n_inputs} inputs, gets shape {shape[1:]}"
                    )
                shape = (shape[0], layer.n_outputs)
                continue
            if isinstance(layer, Flatten):
                if len(shape) != 4:
                    raise MalformedModelError(f"{label} needs feature maps, gets {shape[1:]}")
                shape = (shape[0], shape[1] * shape[2] * shape[3])
                continue
            if isinstance(layer, (Conv2D, Pool2D, GlobalAvgPool)) and len(shape) != 4:
                raise MalformedModelError(f"{label} needs feature maps, gets a vector")
            if isinstance(layer, Conv2D):
                if shape[1] != layer.in_channels:
                    raise MalformedModelError(
                        f"{label} expects {layer.in_channels} channels, gets {shape[1]}"
                    )
                pads = resolve_padding(layer.padding, layer.kernel, layer.stride, shape[2:])
                oh = output_size(shape[2], layer.kernel[0], layer.stride[0], pads[0], pads[2])
                ow = output_size(shape[3], layer.kernel[1], layer.stride[1], pads[1], pads[3])
                shape = (shape[0], layer.out_channels, oh, ow)
            elif isinstance(layer, Pool2D):
                _, oh, ow = layer.geometry(shape[2:])
                shape = (shape[0], shape[1], oh, ow)
            elif isinstance(layer, GlobalAvgPool):
                shape = (shape[0], shape[1], 1, 1)
            elif isinstance(layer, PReLU) and layer.slopes.size != shape[1]:
                raise MalformedModelError(
                    f"{label} has {layer.slopes.size} slopes for {shape[1]} channels"
                )
            if len(shape) == 4 and min(shape[2:]) < 1:
                raise UsageError(f"the image is smaller than the receptive field at {label}")
        return shape

    # -- the reference -----------------------------------------------------------------------
    def check_image(self, x: Any) -> tuple[np.ndarray, bool]:
        """`x` as a finite float64 (N, C, H, W) array in chw order, and whether it was one."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu":
            raise UsageError(f"images must be real numbers, got dtype {arr.dtype}")
        single = arr.ndim == 3
        if arr.ndim not in (3, 4):
            raise UsageError(f"expected an image (3-D) or a batch (4-D), got shape {arr.shape}")
        arr = arr[None] if single else arr
        if self.input_layout == "hwc":
            arr = arr.transpose(0, 3, 1, 2)
        if arr.shape[1] != self.channels:
            raise UsageError(
                f"expected {self.channels} channels ({self.input_layout}), got shape {np.shape(x)}"
            )
        if self.size is not None and tuple(arr.shape[2:]) != self.size:
            raise UsageError(
                f"expected images of {self.size[0]}x{self.size[1]}, got {arr.shape[2:]}"
            )
        arr = np.ascontiguousarray(arr, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise UsageError("images must be finite (no NaN or infinity)")
        return arr, single

    def forward(self, x: Any, dtype: Any = np.float64) -> dict[str, np.ndarray]:
        """Each head's output: maps (O, H', W') or vectors, batched when x is (N, ...)."""
        h, single = self.check_image(x)
        self.shapes(h.shape)
        h = h.astype(_reference_dtype(dtype), copy=False)
        for layer in self.trunk:
            h = apply_layer(layer, h)
        out = {}
        for name, layers in self.heads:
            g = h
            for layer in layers:
                g = apply_layer(layer, g)
            out[name] = g[0] if single else g
        return out


def _pad(h: np.ndarray, pads: tuple[int, int, int, int], value: float) -> np.ndarray:
    top, left, bottom, right = pads
    if not any(pads):
        return h
    out = np.full(
        (h.shape[0], h.shape[1], h.shape[2] + top + bottom, h.shape[3] + left + right),
        value,
        dtype=h.dtype,
    )
    out[:, :, top : top + h.shape[2], left : left + h.shape[3]] = h
    return out
