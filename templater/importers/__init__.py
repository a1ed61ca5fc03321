"""Importers: models trained elsewhere (scikit-learn, PyTorch, ONNX) -> Network.

Each framework is imported only when its importer is first used: `import templater` never
imports torch, onnx or scikit-learn.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from templater.errors import UnsafeInputError, UsageError
from templater.network import Network

# Suffixes whose only loaders unpickle: refused, never retried with pickling allowed.
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".joblib")


def load_any(path: str | os.PathLike) -> Network:
    """A Network from a model file, by suffix: `.npz` (templater's own) or `.onnx`."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        from templater.convfile import load_any_version

        return load_any_version(path)
    if suffix == ".onnx":
        return from_onnx(path)
    if suffix in PICKLE_SUFFIXES:
        raise UnsafeInputError(
            f"{path}: refused: would need unpickling ({suffix} files are pickles); export the "
            "model to ONNX, or pass the in-memory object to from_torch / from_sklearn"
        )
    raise UsageError(f"{path}: unknown model file type {suffix!r}; expected .npz or .onnx")


def from_sklearn(estimator: Any, name: str = "") -> Network:
    """See templater.importers.sklearn.from_sklearn (imports scikit-learn when called)."""
    from templater.importers.sklearn import from_sklearn as impl

    return impl(estimator, name=name)


def from_torch(
    module: Any, head: Any = None, name: str = "", heads: dict | None = None,
    size: tuple[int, int] | None = None,
) -> Any:
    """A Network (templater.importers.torch.from_torch) or, for a module with Conv2d or pooling
    layers or given with `heads` ({name: nn.Sequential}), a ConvNetwork
    (templater.importers.torch_conv). Imports torch when called."""
    from templater.importers.torch_conv import CONV_MODULES, from_torch_conv

    modules = [type(m).__name__ for m in module.modules()] if hasattr(module, "modules") else []
    if heads is not None or any(m in CONV_MODULES for m in modules):
        if head is not None:
            raise UsageError("a convolutional network has named heads, not a head=")
        return from_torch_conv(module, heads, size=size, name=name)
    from templater.importers.torch import from_torch as impl

    return impl(module, head=head, name=name)


def from_onnx(path: str | os.PathLike, output: str | None = None, head: Any = None) -> Any:
    """A Network (templater.importers.onnx.from_onnx) or, for a graph with convolutions or
    pooling, a ConvNetwork with every graph output as a head (importers.onnx_conv). Imports onnx
    when called."""
    from templater.fileio import read_bounded
    from templater.importers.onnx import MAX_FILE_BYTES, network_from_model, parse
    from templater.importers.onnx_conv import convnet_from_model, is_convolutional

    where = str(path)
    model = parse(read_bounded(path, MAX_FILE_BYTES, "ONNX"), where)
    if is_convolutional(model):
        if output is not None or head is not None:
            raise UsageError(f"{where}: a convolutional graph keeps all its outputs as heads")
        return convnet_from_model(model, where)
    return network_from_model(model, where, output=output, head=head)



def import_file(
    path: str | os.PathLike,
    tensor: str | None = None,
    head: str | None = None,
    threshold: float | None = None,
) -> Network:
    """`load_any(path)`, optionally computing another ONNX tensor or with another head.

    `head`: binary, multiclass or regression; `threshold`: the binary head's threshold.
    """
    if tensor is not None:
        if Path(path).suffix.lower() != ".onnx":
            raise UsageError(f"{path}: choosing a tensor applies to .onnx files only")
        net = from_onnx(path, output=tensor)
    else:
        net = load_any(path)
    if head is None and threshold is None:
        return net
    from templater.network import Head

    kind = head or net.head.kind
    if threshold is not None and kind != "binary":
        raise UsageError(f"a threshold applies to a binary head; this one is {kind}")
    if kind == "binary":
        new = Head("binary", threshold=net.head.threshold if threshold is None else threshold)
    else:
        labels = net.head.labels if kind == net.head.kind else None
        new = Head(kind, labels=labels)
    return net.with_layers(net.layers, head=new)
