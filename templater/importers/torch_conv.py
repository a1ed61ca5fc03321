"""PyTorch importer for convolutional modules: a trunk nn.Sequential plus a dict of head
Sequentials (or one Sequential, one head) -> ConvNetwork, in inference mode.

Conv2d (zero padding, dilation 1, any groups), MaxPool2d and AvgPool2d (padding, ceil_mode,
count_include_pad), PReLU (one slope or one per channel), BatchNorm2d (folded into the Conv2d
before it), Flatten (PyTorch's order: channels, rows, columns), Linear (BatchNorm1d folded), and
the elementwise activations of templater.importers.torch. Anything else is refused by name.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from templater.convnet import Act, Conv2D, ConvNetwork, Flatten, Layer, Pool2D, PReLU
from templater.errors import MalformedModelError, UnsupportedError, UsageError
from templater.importers.torch import _array, _leaves
from templater.network import Activation, Dense

CONV_MODULES = ("Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm2d", "PReLU")
SUPPORTED = (
    "Conv2d",
    "MaxPool2d",
    "AvgPool2d",
    "PReLU",
    "BatchNorm2d",
    "BatchNorm1d",
    "Flatten",
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Hardsigmoid",
    "Softmax",
    "Identity",
    "Dropout",
)


def from_torch_conv(
    trunk: Any,
    heads: dict[str, Any] | None = None,
    channels: int | None = None,
    size: tuple[int, int] | None = None,
    name: str = "",
) -> ConvNetwork:
    """`trunk` (nn.Sequential) followed by each of `heads` ({name: nn.Sequential}; default: the
    trunk alone is the one head 'out'). `channels`: the input's channels (default: the first
    Conv2d's); `size`: (rows, columns), needed when a head flattens."""
    try:
        from torch import nn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError("from_torch needs PyTorch: pip install templater[torch]") from exc
    if not isinstance(trunk, nn.Sequential):
        raise UnsupportedError(f"the trunk must be an nn.Sequential, got {type(trunk).__name__}")
    trunk_layers = _layers(trunk, "trunk", nn)
    if heads is None:
        parts = (("out", tuple(trunk_layers)),)
        trunk_layers = []
    else:
        parts = tuple((str(k), tuple(_layers(v, f"heads[{k!r}]", nn))) for k, v in heads.items())
    if channels is None:
        first = next((m for _, m in _leaves(trunk, "") if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise UsageError("cannot tell the input's channels: pass channels=")
        channels = int(first.in_channels)
    return ConvNetwork(
        channels, tuple(trunk_layers), parts, size=size, name=name, metadata={"source": "torch"}
    )


def _layers(module: Any, label: str, nn: Any) -> list[Layer]:
    import torch

    if not isinstance(module, nn.Sequential):
        raise UnsupportedError(f"{label} must be an nn.Sequential, got {type(module).__name__}")
    out: list[Layer] = []
    with torch.no_grad():
        for path, m in _leaves(module, ""):
            where = f"{label} module {path} ({type(m).__name__})"
            if type(m) not in {getattr(nn, n) for n in SUPPORTED}:
                raise UnsupportedError(
                    f"{where} is not supported; supported: {', '.join(SUPPORTED)}"
                )
            layer = _layer(m, where, out, nn)
            if layer is not None:
                out.append(layer)
    return out


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _layer(m: Any, where: str, previous: list[Layer], nn: Any) -> Layer | None:
    """The layer for module `m`, or None (the module changed `previous` in place, or is a no-op)."""
    if isinstance(m, nn.Conv2d):
        if _pair(m.dilation) != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str):
            raise UnsupportedError(
                f"{where}: dilation {m.dilation}, padding {m.padding!r} ({m.padding_mode}): "
                "only dilation 1 and explicit zero padding are supported"
            )
        ph, pw = _pair(m.padding)
        bias = np.zeros(m.out_channels) if m.bias is None else _array(m.bias, where + " bias")
        return Conv2D(
            _array(m.weight, where + " weight"),
            bias,
            _pair(m.stride),
            (ph, pw, ph, pw),
            int(m.groups),
        )
    if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)):
        if isinstance(m, nn.MaxPool2d) and (_pair(m.dilation) != (1, 1) or m.return_indices):
            raise UnsupportedError(f"{where}: dilation or return_indices")
        if isinstance(m, nn.AvgPool2d) and m.divisor_override is not None:
            raise UnsupportedError(f"{where}: divisor_override")
        ph, pw = _pair(m.padding)
        return Pool2D(
            "max" if isinstance(m, nn.MaxPool2d) else "avg",
            _pair(m.kernel_size),
            _pair(m.stride if m.stride is not None else m.kernel_size),
            (ph, pw, ph, pw),
            bool(m.ceil_mode),
            bool(getattr(m, "count_include_pad", False)),
        )
    if isinstance(m, nn.PReLU):
        slopes = _array(m.weight, where + " weight").reshape(-1)
        if slopes.size == 1:  # one shared slope: repeat it for the channels before
            slopes = np.repeat(slopes, _channels(previous, where))
        return PReLU(slopes)
    if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        _fold_batchnorm(m, where, previous, nn)
        return None
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            raise UnsupportedError(f"{where}: only Flatten(start_dim=1, end_dim=-1)")
        return Flatten("chw")
    if isinstance(m, nn.Linear):
        bias = np.zeros(m.out_features) if m.bias is None else _array(m.bias, where + " bias")
        return Dense(_array(m.weight, where + " weight").T, bias)
    if isinstance(m, nn.Softmax):
        if m.dim not in (1, -3 if previous and not isinstance(previous[-1], Dense) else 1):
            raise UnsupportedError(f"{where}: softmax over dim {m.dim} (only channels, dim 1)")
        return Act(Activation("softmax"))
    simple = {
        nn.ReLU: ("relu", {}),
        nn.Sigmoid: ("sigmoid", {}),
        nn.Tanh: ("tanh", {}),
        nn.Hardsigmoid: ("hard_sigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}),
    }
    if type(m) in simple:
        act, params = simple[type(m)]
        return Act(Activation(act, **params))
    if isinstance(m, nn.LeakyReLU):
        return Act(Activation("leaky_relu", alpha=float(m.negative_slope)))
    return None  # Identity, Dropout: nothing in inference


def _channels(previous: list[Layer], where: str) -> int:
    for layer in reversed(previous):
        if isinstance(layer, Conv2D):
            return layer.out_channels
        if isinstance(layer, Dense):
            return layer.n_outputs
    raise UnsupportedError(f"{where}: a shared slope needs a Conv2d or Linear before it")


def _fold_batchnorm(m: Any, where: str, previous: list[Layer], nn: Any) -> None:
    if m.running_mean is None or m.running_var is None:
        raise UnsupportedError(f"{where}: track_running_stats=False has no inference statistics")
    last = previous[-1] if previous else None
    if not isinstance(last, (Conv2D, Dense)):
        raise UnsupportedError(f"{where} must follow a Conv2d or Linear to be folded into it")
    mean = _array(m.running_mean, where + " running_mean")
    scale = 1.0 / np.sqrt(_array(m.running_var, where + " running_var") + float(m.eps))
    if m.weight is not None:
        scale = scale * _array(m.weight, where + " weight")
    shift = -mean * scale + (0.0 if m.bias is None else _array(m.bias, where + " bias"))
    if isinstance(last, Conv2D):
        folded = replace(
            last, weights=last.weights * scale[:, None, None, None], bias=last.bias * scale + shift
        )
    else:
        folded = replace(
            last, weights=last.weights * scale[None, :], bias=last.bias * scale + shift
        )
    if not np.isfinite(folded.weights).all():
        raise MalformedModelError(f"{where}: folding gives non-finite weights")
    previous[-1] = folded
