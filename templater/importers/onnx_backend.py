"""An onnx.backend Backend that runs ONNX models through templater's compiled programs.

It exists to check the ONNX importer against ONNX's own node test cases. templater inlines
weights, so `run` binds every input but the first (the data) as a constant before importing;
each distinct bound model is compiled once per target and kept in `folder`.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from onnx import ModelProto, helper, numpy_helper
from onnx.backend.base import Backend, BackendRep

from templater.errors import UnsupportedError
from templater.fileio import write_atomic
from templater.importers.onnx import network_from_model
from templater.importers.onnx_conv import convnet_from_model, is_convolutional
from templater.network import Network

# Ops computed element by element: any leading axes may be folded into the batch.
_ELEMENTWISE = frozenset(
    {"Relu", "LeakyRelu", "Sigmoid", "Tanh", "HardSigmoid", "Clip", "Identity", "Dropout", "Cast"}
)


class TemplaterRep(BackendRep):
    """A model with its constants unbound; `run` binds them, compiles (cached) and runs."""

    def __init__(self, model: ModelProto, target: str, folder: Path) -> None:
        self.model = model
        self.target = target
        self.folder = folder

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if len(self.model.graph.output) != 1:
            names = ", ".join(repr(o.name) for o in self.model.graph.output)
            raise UnsupportedError(
                f"{self.model.graph.name}: the graph has outputs {names}; a program computes one"
            )
        inputs = [np.asarray(a) for a in inputs]
        model = bind_constants(self.model, inputs[1:])
        data = inputs[0]
        if is_convolutional(model):
            return (run_conv(model, data, self.target, self.folder),)
        model, rows_of = _fold_leading_axes(model, data.shape)
        net = network_from_model(model, where=self.model.graph.name or "<onnx>")
        rows = data.reshape(rows_of, -1) if rows_of else data.reshape(1, -1)
        if net.metadata.get("input_columns_are_samples"):
            rows = data.T
        program = compiled(net, self.target, self.folder)
        out = run_rows(program, net, self.target, np.asarray(rows, dtype=np.float64))
        declared = self.model.graph.output[0].type.tensor_type.shape.dim
        shape = tuple(int(d.dim_value) for d in declared)
        return (out.reshape(shape).astype(data.dtype),)


class TemplaterBackend(Backend):
    """`prepare(model, target="python" | "numba", folder=...)` -> TemplaterRep."""

    @classmethod
    def prepare(  # type: ignore[override]
        cls,
        model: ModelProto,
        device: str = "CPU",
        target: str = "python",
        folder: str | Path | None = None,
        **kwargs: Any,
    ) -> TemplaterRep:
        if not cls.supports_device(device):
            raise UnsupportedError(f"templater programs run on the CPU, not {device!r}")
        folder = Path(folder) if folder is not None else Path(tempfile.mkdtemp(prefix="templater-"))
        return TemplaterRep(model, target, folder)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"


def bind_constants(model: ModelProto, values: list[np.ndarray]) -> ModelProto:
    """A copy of `model` whose graph inputs after the first are initializers holding `values`."""
    out = ModelProto()
    out.CopyFrom(model)
    initialized = {t.name for t in out.graph.initializer}
    free = [i for i in out.graph.input if i.name not in initialized]
    if len(values) != len(free) - 1:
        raise UnsupportedError(f"expected {len(free) - 1} constant inputs, got {len(values)}")
    for value_info, value in zip(free[1:], values, strict=True):
        out.graph.initializer.append(numpy_helper.from_array(value, name=value_info.name))
    keep = [i for i in out.graph.input if i.name not in {v.name for v in free[1:]}]
    del out.graph.input[:]
    out.graph.input.extend(keep)
    return out


def _fold_leading_axes(model: ModelProto, shape: tuple[int, ...]) -> tuple[ModelProto, int]:
    """For a graph of elementwise ops ending in a Softmax over the last axis, declare the input
    as (all leading axes, last axis) and the Softmax axis as -1: the same rows, one per sample.
    Returns the model and how many rows the data holds (0: one sample, when the rank is 1)."""
    ops = [n.op_type for n in model.graph.node]
    if len(shape) <= 2 or "Softmax" not in ops or ops[-1] != "Softmax":
        return model, (shape[0] if len(shape) >= 2 else 0)
    softmax = model.graph.node[-1]
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    axis = next((helper.get_attribute_value(a) for a in softmax.attribute if a.name == "axis"),
                -1 if opset >= 13 else 1)
    if opset < 13 or axis not in (-1, len(shape) - 1) or not set(ops[:-1]) <= _ELEMENTWISE:
        return model, shape[0]
    out = ModelProto()
    out.CopyFrom(model)
    rows = math.prod(shape[:-1])
    data = out.graph.input[0].type.tensor_type.shape
    del data.dim[:]
    data.dim.add().dim_value = rows
    data.dim.add().dim_value = shape[-1]
    node = out.graph.node[-1]
    del node.attribute[:]
    node.attribute.append(helper.make_attribute("axis", -1))
    return out, rows


def compiled(net: Network, target: str, folder: Path) -> ModuleType:
    """The imported program for `net`, compiled once per (weights, target) in `folder`."""
    import templater

    path = folder / f"p{net.digest()[:16]}_{target}.py"
    source = templater.compile(net, target=target)
    # Rewrite only on change: an unchanged file keeps numba's on-disk cache valid.
    if not path.exists() or path.read_text() != source:
        write_atomic(path, source)
    return templater.import_program(path)


def run_rows(program: ModuleType, net: Network, target: str, rows: np.ndarray) -> np.ndarray:
    """All outputs of `program` for each row of `rows`, as an (n, n_outputs) array."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    if target == "numba":
        out = np.asarray(program.score_batch(rows))
    else:
        out = np.asarray(program.score_batch([list(map(float, r)) for r in rows]))
    return out.reshape(len(rows), net.n_outputs)


def run_conv(model: ModelProto, data: np.ndarray, target: str, folder: Path) -> np.ndarray:
    """A convolutional graph's one output for a batch (N, C, H, W): each image through the
    compiled program, stacked back into the batch."""
    import templater
    from templater.conv_compiler import compile_conv
    from templater.convfile import convnet_digest

    net = convnet_from_model(model, where=model.graph.name or "<onnx>")
    if len(net.heads) != 1:
        raise UnsupportedError(f"{model.graph.name}: one output expected")
    path = folder / f"c{convnet_digest(net)}_{target}.py"
    source = compile_conv(net, target)
    if not path.exists() or path.read_text() != source:
        write_atomic(path, source)
    program = templater.import_program(path)
    (head,) = program.HEADS
    outs = [np.asarray(program.forward(image)[head], dtype=np.float64) for image in data]
    return np.stack(outs).astype(data.dtype)
