"""PyTorch importer: an in-memory nn.Sequential of dense layers and activations -> Network."""

from __future__ import annotations

from typing import Any

import numpy as np

from templater.errors import MalformedModelError, UnsupportedError, UsageError
from templater.importers.chain import ChainBuilder
from templater.network import Activation, Head, Network

SUPPORTED_MODULES = (
    "Linear",
    "ReLU",
    "LeakyReLU",
    "Sigmoid",
    "Tanh",
    "Hardsigmoid",
    "Identity",
    "Flatten",
    "Dropout",
    "BatchNorm1d",
)


def from_torch(module: Any, head: Head | None = None, name: str = "") -> Network:
    """A Network computing `module(x)` in inference mode (Dropout is the identity; BatchNorm1d
    uses its running statistics and is folded into the preceding Linear).

    `module` is an `nn.Sequential` (nested ones are flattened). Default head: one output is
    binary (threshold 0.5 after a Sigmoid/Hardsigmoid, else 0.0); several are multi-class.
    Nothing is unpickled: only in-memory modules are accepted.
    """
    try:
        import torch
        from torch import nn
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError("from_torch needs PyTorch: pip install templater[torch]") from exc

    if not isinstance(module, nn.Sequential):
        raise UnsupportedError(
            f"from_torch takes an nn.Sequential, got {type(module).__name__}; "
            f"supported modules inside it: {', '.join(SUPPORTED_MODULES)}"
        )
    leaves = list(_leaves(module, ""))
    if not leaves:
        raise MalformedModelError("the Sequential is empty: model has no layers")
    unsupported = [f"{path} ({type(m).__name__})" for path, m in leaves if not _is_torch(m, nn)]
    if unsupported:
        raise UnsupportedError(
            f"unsupported module(s): {'; '.join(unsupported)}; "
            f"supported: {', '.join(SUPPORTED_MODULES)}"
        )
    width = _input_width(leaves, nn)
    builder = ChainBuilder(width)
    with torch.no_grad():
        for path, m in leaves:
            where = f"module {path} ({type(m).__name__})"
            if isinstance(m, nn.Linear):
                w = _array(m.weight, where + " weight").T
                b = None if m.bias is None else _array(m.bias, where + " bias")
                builder.affine(w, b, name=path)
            elif isinstance(m, nn.BatchNorm1d):
                if m.running_mean is None or m.running_var is None:
                    raise UnsupportedError(
                        f"{where}: track_running_stats=False has no inference statistics"
                    )
                mean = _array(m.running_mean, where + " running_mean")
                var = _array(m.running_var, where + " running_var")
                scale = 1.0 / np.sqrt(var + float(m.eps))
                shift = -mean * scale
                if m.weight is not None:
                    gamma = _array(m.weight, where + " weight")
                    scale, shift = scale * gamma, shift * gamma
                if m.bias is not None:
                    shift = shift + _array(m.bias, where + " bias")
                builder.scale_shift(scale, shift, name=path)
            elif isinstance(m, nn.ReLU):
                builder.activation(Activation("relu"), name=path)
            elif isinstance(m, nn.LeakyReLU):
                builder.activation(Activation("leaky_relu", alpha=float(m.negative_slope)), path)
            elif isinstance(m, nn.Sigmoid):
                builder.activation(Activation("sigmoid"), name=path)
            elif isinstance(m, nn.Tanh):
                builder.activation(Activation("tanh"), name=path)
            elif isinstance(m, nn.Hardsigmoid):
                # relu6(x + 3) / 6 == clamp(x / 6 + 1/2, 0, 1)
                builder.activation(Activation("hard_sigmoid", alpha=1.0 / 6.0, beta=0.5), path)
            elif isinstance(m, nn.Flatten) and (m.start_dim != 1 or m.end_dim != -1):
                raise UnsupportedError(
                    f"{where}: expected Flatten(start_dim=1, end_dim=-1), got "
                    f"start_dim={m.start_dim}, end_dim={m.end_dim}"
                )
            # Identity and Dropout compute nothing in inference.
    return builder.network(width, head, name, {"source": "torch"})


def _leaves(module: Any, prefix: str) -> Any:
    """(dotted path, module) for every non-Sequential module, nested Sequentials flattened."""
    from torch import nn

    for key, child in module.named_children():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(child, nn.Sequential):
            yield from _leaves(child, path)
        else:
            yield path, child


def _is_torch(m: Any, nn: Any) -> bool:
    """A subclass named like a supported module may override forward(): refuse it."""
    return type(m) in {getattr(nn, n) for n in SUPPORTED_MODULES}


def _input_width(leaves: list[tuple[str, Any]], nn: Any) -> int:
    for _path, m in leaves:
        if isinstance(m, nn.Linear):
            return int(m.in_features)
        if isinstance(m, nn.BatchNorm1d):
            return int(m.num_features)
        if not isinstance(m, (nn.Identity, nn.Dropout, nn.Flatten)):
            break
    raise UsageError(
        "cannot tell the input size: the Sequential must start with a Linear or BatchNorm1d "
        "(after any Flatten, Dropout or Identity)"
    )


def _array(tensor: Any, what: str) -> np.ndarray:
    import torch

    if tensor.dtype not in (torch.float32, torch.float64):
        raise UnsupportedError(
            f"{what}: expected float32 or float64, got {tensor.dtype} (convert the module "
            "explicitly, e.g. module.double())"
        )
    arr = tensor.detach().cpu().numpy().astype(np.float64)
    if not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr))
        raise MalformedModelError(
            f"{what}: {bad.size} non-finite value(s), first at flat index {int(bad[0])}"
        )
    return arr
