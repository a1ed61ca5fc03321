"""ONNX importer: a chain graph of dense layers and activations in a .onnx file -> Network.

Only the nodes the chosen output depends on are read, and they must form a chain from the one
graph input: each node takes the running tensor plus constants (initializers or Constant nodes).
Dimension 0 of a rank-2+ input is the batch; the rest are one sample's features, in row-major
order. Arithmetic is float64 throughout (a `Cast` to float or double is therefore a no-op).
"""

from __future__ import annotations

import io
import math
import os
from typing import Any

import numpy as np

from templater.errors import (
    MalformedModelError,
    TooLargeError,
    UnsafeInputError,
    UnsupportedError,
    UsageError,
)
from templater.fileio import read_bounded
from templater.importers.chain import ChainBuilder
from templater.importers.onnx_ops import _FLOAT_TYPES, _dims, _Op, _State
from templater.network import MAX_PARAMETERS, Head, Network, check_finite

# Opsets of the default domain whose semantics for the ops below this importer implements.
MIN_OPSET = 7
MAX_OPSET = 28
MAX_FILE_BYTES = 8 * (MAX_PARAMETERS + 1) + (4 << 20)

# Supported ops and the attributes each may carry (any other attribute is refused).
SUPPORTED_OPS: dict[str, frozenset[str]] = {
    "Gemm": frozenset({"alpha", "beta", "transA", "transB"}),
    "MatMul": frozenset(),
    "Add": frozenset(),
    "Relu": frozenset(),
    "LeakyRelu": frozenset({"alpha"}),
    "Sigmoid": frozenset(),
    "Tanh": frozenset(),
    "HardSigmoid": frozenset({"alpha", "beta"}),
    "Clip": frozenset({"min", "max"}),
    "Identity": frozenset(),
    "Dropout": frozenset({"ratio", "seed"}),
    "Flatten": frozenset({"axis"}),
    "Reshape": frozenset({"allowzero"}),
    "BatchNormalization": frozenset({"epsilon", "momentum", "training_mode", "spatial"}),
    "Softmax": frozenset({"axis"}),
    "Cast": frozenset({"to", "saturate"}),
    "Constant": frozenset({"value", "value_float", "value_floats", "value_int", "value_ints"}),
}
_DEFAULT_DOMAINS = ("", "ai.onnx")


def from_onnx(
    path: str | os.PathLike, output: str | None = None, head: Head | None = None
) -> Network:
    """Read `path` (never external data) and return the Network computing `output`.

    `output`: a graph output or any tensor name; by default the only graph output, or the only
    float one (skl2onnx classifiers also output an integer label). `head`: by default one output
    is binary (threshold 0.5 after Sigmoid/HardSigmoid, else 0.0) and several are multi-class.
    """
    where = str(path)
    data = read_bounded(path, MAX_FILE_BYTES, "ONNX")
    return network_from_model(parse(data, where), where, output=output, head=head)


def parse(data: bytes, where: str) -> Any:
    """The ModelProto in `data`; external data is never loaded."""
    onnx = _onnx()
    if data[:2] == b"PK" or data[:1] == b"\x80":
        raise MalformedModelError(f"{where}: not an ONNX file (this is a zip archive or a pickle)")
    try:
        model = onnx.load(io.BytesIO(data), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends: all mean the same here
        raise MalformedModelError(
            f"{where}: file is truncated or not an ONNX file ({type(exc).__name__}: {exc})"
        ) from exc
    if not model.HasField("graph"):
        raise MalformedModelError(f"{where}: file is truncated or not an ONNX file (no graph)")
    return model


def network_from_model(
    model: Any, where: str = "<onnx>", output: str | None = None, head: Head | None = None
) -> Network:
    """The Network computing `output` of an in-memory ModelProto (see `from_onnx`)."""
    return _Reader(model, where).network(output, head)


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError("reading .onnx files needs onnx: pip install templater[onnx]") from exc
    return onnx


class _Reader:
    """One model's graph, checked and walked as a chain."""

    def __init__(self, model: Any, where: str) -> None:
        self.onnx = _onnx()
        self.model = model
        self.graph = model.graph
        self.where = where
        self._refuse_external_data()
        if len(self.graph.node) == 0:
            raise MalformedModelError(f"{where}: the graph has no nodes; model has no layers")
        self.opset = self._default_opset()
        self.initializers = {t.name: t for t in self.graph.initializer}
        self.producers: dict[str, int] = {}
        # Identity of a constant is a constant (PyTorch's exporter writes such nodes).
        self.aliases: dict[str, str] = {}
        for index, node in enumerate(self.graph.node):
            for name in node.output:
                if name:
                    self.producers[name] = index
            if node.op_type == "Identity" and node.domain in _DEFAULT_DOMAINS and node.input:
                source = self.aliases.get(node.input[0], node.input[0])
                if self._is_constant(source):
                    self.aliases[node.output[0]] = source

    def _is_constant(self, name: str) -> bool:
        index = self.producers.get(name)
        return name in self.initializers or (
            index is not None and self.graph.node[index].op_type == "Constant"
        )

    # -- whole-model checks ----------------------------------------------------------------
    def _refuse_external_data(self) -> None:
        tensors = list(self.graph.initializer)
        for node in self.graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    tensors.append(attr.t)
                tensors.extend(attr.tensors)
        if len(self.graph.sparse_initializer):
            raise UnsupportedError(f"{self.where}: sparse initializers are not supported")
        for t in tensors:
            if t.data_location == self.onnx.TensorProto.EXTERNAL or len(t.external_data):
                location = {e.key: e.value for e in t.external_data}.get("location", "")
                raise UnsafeInputError(
                    f"{self.where}: tensor {t.name!r} is stored as external data "
                    f"(location {location!r}); only self-contained .onnx files are read"
                )

    def _default_opset(self) -> int:
        versions = [o.version for o in self.model.opset_import if o.domain in _DEFAULT_DOMAINS]
        if not versions:
            raise UnsupportedError(f"{self.where}: the model imports no default (ai.onnx) opset")
        version = int(versions[0])
        if not MIN_OPSET <= version <= MAX_OPSET:
            raise UnsupportedError(
                f"{self.where}: opset {version} of the default domain; supported: "
                f"{MIN_OPSET} to {MAX_OPSET}"
            )
        return version

    def _input(self) -> tuple[str, int, tuple[int | None, ...]]:
        inputs = [i for i in self.graph.input if i.name not in self.initializers]
        if len(inputs) != 1:
            names = ", ".join(repr(i.name) for i in inputs) or "none"
            raise UnsupportedError(
                f"{self.where}: expected one graph input (initializers aside), found {names}"
            )
        value = inputs[0]
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            raise UnsupportedError(f"{self.where}: input {value.name!r} is a {kind}, not a tensor")
        tensor = value.type.tensor_type
        if tensor.elem_type not in _FLOAT_TYPES:
            names = self.onnx.TensorProto.DataType  # Name() raises on a number it does not know
            known = tensor.elem_type in names.values()
            name = names.Name(tensor.elem_type) if known else f"{tensor.elem_type} (unknown)"
            raise UnsupportedError(
                f"{self.where}: input {value.name!r} has element type {name}; "
                "expected float or double"
            )
        if not tensor.HasField("shape") or len(tensor.shape.dim) == 0:
            raise UnsupportedError(f"{self.where}: input {value.name!r} has no declared shape")
        dims = tuple(
            int(d.dim_value) if d.HasField("dim_value") else None for d in tensor.shape.dim
        )
        return value.name, tensor.elem_type, dims

    def _output(self, output: str | None) -> str:
        outputs = list(self.graph.output)
        if output is not None:
            if output not in self.producers:
                raise UsageError(f"{self.where}: no node computes a tensor named {output!r}")
            return output
        if len(outputs) == 1:
            return outputs[0].name
        floats = [
            o
            for o in outputs
            if o.type.WhichOneof("value") == "tensor_type"
            and o.type.tensor_type.elem_type in _FLOAT_TYPES
        ]
        if len(floats) == 1:
            return floats[0].name
        names = ", ".join(repr(o.name) for o in outputs) or "none"
        raise UsageError(f"{self.where}: the graph has outputs {names}; choose one (output=...)")

    def _needed(self, output: str) -> list[int]:
        """Indices of the nodes `output` depends on, in graph order."""
        seen: set[int] = set()
        stack = [output]
        while stack:
            index = self.producers.get(stack.pop())
            if index is None or index in seen:
                continue
            seen.add(index)
            stack.extend(n for n in self.graph.node[index].input if n)
        return sorted(seen)

    def _check_ops(self, needed: list[int]) -> None:
        bad_ops, bad_attrs = [], []
        for index in needed:
            node = self.graph.node[index]
            label = f"node {index} {node.op_type!r} (domain {node.domain!r}, name {node.name!r})"
            if node.domain not in _DEFAULT_DOMAINS or node.op_type not in SUPPORTED_OPS:
                bad_ops.append(label)
                continue
            allowed = SUPPORTED_OPS[node.op_type]
            extra = sorted(a.name for a in node.attribute if a.name not in allowed)
            if extra:
                bad_attrs.append(f"{label}: {', '.join(repr(a) for a in extra)}")
        if bad_ops:
            raise UnsupportedError(
                f"{self.where}: {len(bad_ops)} unsupported node(s): {'; '.join(bad_ops)}. "
                f"Supported ops: {', '.join(SUPPORTED_OPS)}"
            )
        if bad_attrs:
            raise UnsupportedError(
                f"{self.where}: unsupported attribute(s): {'; '.join(bad_attrs)}"
            )

    # -- constants ---------------------------------------------------------------------------
    def _tensor_array(self, tensor: Any, name: str) -> np.ndarray:
        count = math.prod(int(d) for d in tensor.dims)
        if count > MAX_PARAMETERS:
            raise TooLargeError(
                f"{self.where}: tensor {name!r} declares {count:,} values; "
                f"the limit is {MAX_PARAMETERS:,}"
            )
        try:
            arr = self.onnx.numpy_helper.to_array(tensor)
        except Exception as exc:  # a malformed tensor (wrong byte count, bad type) in any form
            raise MalformedModelError(
                f"{self.where}: tensor {name!r} is malformed ({exc})"
            ) from exc
        return np.asarray(arr)

    def constant(self, name: str, node_label: str) -> np.ndarray:
        name = self.aliases.get(name, name)
        if name in self.initializers:
            arr = self._tensor_array(self.initializers[name], name)
        elif name in self.producers and self.graph.node[self.producers[name]].op_type == "Constant":
            node = self.graph.node[self.producers[name]]
            attr = node.attribute[0] if len(node.attribute) == 1 else None
            if attr is None:
                raise MalformedModelError(f"{self.where}: Constant {name!r} needs one attribute")
            if attr.name == "value":
                arr = self._tensor_array(attr.t, name)
            else:
                value = self.onnx.helper.get_attribute_value(attr)
                kind = np.float32 if attr.name.startswith("value_float") else np.int64
                arr = np.asarray(value, dtype=kind)
        else:
            raise UnsupportedError(
                f"{self.where}: {node_label}: input {name!r} is computed, not a constant; "
                "only chain graphs (the running tensor plus constants) are supported"
            )
        if arr.dtype.kind == "f":
            if arr.dtype.itemsize not in (4, 8):
                raise UnsupportedError(
                    f"{self.where}: tensor {name!r} has dtype {arr.dtype}; expected float32 or "
                    "float64 (convert the model explicitly)"
                )
            check_finite(arr, f"{self.where}: tensor {name!r} (used by {node_label})")
            return arr.astype(np.float64)
        if arr.dtype.kind not in "iub":
            raise UnsupportedError(f"{self.where}: tensor {name!r} has dtype {arr.dtype}")
        return arr

    # -- the walk ----------------------------------------------------------------------------
    def network(self, output: str | None, head: Head | None) -> Network:
        input_name, elem_type, dims = self._input()
        output = self._output(output)
        needed = self._needed(output)
        self._check_ops(needed)
        if any(d is None or d <= 0 for d in dims[1:]) or (len(dims) == 1 and not dims[0]):
            raise UnsupportedError(
                f"{self.where}: input {input_name!r} has shape {_dims(dims)}; every dimension "
                "but the first (the batch) must be a known positive size"
            )
        state = _State(
            batched=len(dims) >= 2,
            batch=dims[0] if len(dims) >= 2 else None,
            shape=tuple(int(d) for d in (dims[1:] if len(dims) >= 2 else dims)),  # type: ignore[arg-type]
            elem_type=elem_type,
        )
        input_size = math.prod(state.shape)
        builder = ChainBuilder(input_size)
        metadata: dict[str, Any] = {"source": "onnx", "opset": self.opset, "output": output}
        running = input_name
        compute = [
            i
            for i in needed
            if self.graph.node[i].op_type != "Constant"
            and self.graph.node[i].output[0] not in self.aliases
        ]
        uses = {name for i in needed for name in self.graph.node[i].input}
        for position, index in enumerate(compute):
            node = self.graph.node[index]
            label = f"node {index} {node.op_type!r} (name {node.name!r})"
            data_slots = [k for k, name in enumerate(node.input) if name == running]
            if len(data_slots) != 1:
                raise UnsupportedError(
                    f"{self.where}: {label} does not continue the chain from the input: it takes "
                    f"{list(node.input)!r}, expected exactly one of them to be {running!r}"
                )
            for extra in node.output[1:]:
                if extra and (extra in uses or extra == output):
                    raise UnsupportedError(
                        f"{self.where}: {label}: its extra output {extra!r} is used; only the "
                        "first output of a node is supported (inference mode)"
                    )
            consts = {
                k: self.constant(name, label)
                for k, name in enumerate(node.input)
                if name and k != data_slots[0]
            }
            attrs = {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}
            op = _Op(self, node, label, data_slots[0], consts, attrs, state, builder)
            if node.op_type == "Gemm" and attrs.get("transA", 0):
                if position != 0 or running != input_name or len(dims) != 2 or dims[0] is None:
                    raise UnsupportedError(
                        f"{self.where}: {label}: transA=1 is supported only on the graph input "
                        "itself, declared (features, batch) with a known number of features"
                    )
                # The input holds one sample per column: the program reads one column.
                state.shape, state.batch = (int(dims[0]),), dims[1]
                input_size = int(dims[0])
                builder = ChainBuilder(input_size)
                op.builder = builder
                metadata["input_columns_are_samples"] = True
            op.apply()
            if math.prod(state.shape) != builder.width:
                raise AssertionError(f"{label}: width bookkeeping")  # pragma: no cover
            running = node.output[0]
        if running != output:
            raise UnsupportedError(
                f"{self.where}: the chain ends at {running!r}, not at the output {output!r}"
            )
        input_shape = tuple(int(d) for d in dims[1:]) if len(dims) >= 3 else None
        if metadata.get("input_columns_are_samples"):
            input_shape = None
        return builder.network(input_size, head, self.graph.name, metadata, input_shape)
