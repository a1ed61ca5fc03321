"""One ONNX node of a dense chain applied to the running state (the dense ONNX importer's ops).

`_Op` reads one node's attributes and constants through its reader and adds the layer, scale,
bias or activation it means to the chain builder; anything else is refused naming the node.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from templater.errors import UnsupportedError
from templater.importers.chain import ChainBuilder
from templater.network import Activation

_FLOAT, _DOUBLE = 1, 11  # TensorProto.FLOAT, TensorProto.DOUBLE
_FLOAT_TYPES = {_FLOAT: "float", _DOUBLE: "double"}


class _State:
    """The running tensor: per-sample shape, whether dimension 0 is a batch, element type."""

    def __init__(self, batched: bool, batch: int | None, shape: tuple[int, ...], elem_type: int):
        self.batched = batched
        self.batch = batch
        self.shape = shape
        self.elem_type = elem_type

    @property
    def full(self) -> str:
        return _dims(((self.batch,) if self.batched else ()) + self.shape)


class _Op:
    """One node applied to the running tensor."""

    def __init__(
        self,
        reader: Any,  # templater.importers.onnx._Reader (it passes itself)
        node: Any,
        label: str,
        slot: int,
        consts: dict[int, np.ndarray],
        attrs: dict[str, Any],
        state: _State,
        builder: ChainBuilder,
    ) -> None:
        self.reader, self.node, self.slot = reader, node, slot
        self.label = label
        self.consts, self.attrs, self.state, self.builder = consts, attrs, state, builder
        self.opset = reader.opset

    def fail(self, message: str) -> UnsupportedError:
        return UnsupportedError(f"{self.reader.where}: {self.label}: {message}")

    def need_slot(self, slot: int) -> None:
        if self.slot != slot:
            raise self.fail(
                f"the running tensor must be input {slot}, found it at input {self.slot}"
            )

    def apply(self) -> None:
        getattr(self, "op_" + self.node.op_type)()

    # -- shape-only ops ------------------------------------------------------------------------
    def op_Identity(self) -> None:
        pass

    def op_Cast(self) -> None:
        to = int(self.attrs.get("to", 0))
        if to not in _FLOAT_TYPES:
            raise self.fail(f"casts to type {to}; only casts to float or double are supported")
        self.state.elem_type = to

    def op_Dropout(self) -> None:
        self.need_slot(0)
        training = self.consts.get(2)
        if training is not None and np.any(training):
            raise self.fail("training_mode is true; only inference (no dropout) is supported")

    def op_Flatten(self) -> None:
        s = self.state
        rank = len(s.shape) + s.batched
        axis = int(self.attrs.get("axis", 1))
        axis = axis + rank if axis < 0 else axis
        if not s.batched or axis != 1:
            raise self.fail(
                f"Flatten(axis={self.attrs.get('axis', 1)}) of a {s.full} tensor would mix the "
                "batch dimension with features; expected axis 1 on a batched input"
            )
        s.shape = (math.prod(s.shape),)

    def op_Reshape(self) -> None:
        self.need_slot(0)
        s = self.state
        target = self.consts.get(1)
        if target is None or target.dtype.kind not in "iu" or target.ndim != 1:
            raise self.fail("expected a constant 1-D integer shape")
        allowzero = bool(self.attrs.get("allowzero", 0))
        full = ((s.batch,) if s.batched else ()) + s.shape
        t = [int(v) for v in target]
        shown = [int(v) for v in target]
        if any(v == 0 for v in t) and allowzero:
            raise self.fail(f"allowzero=1 with a 0 in {t}: an empty tensor")
        t = [full[i] if v == 0 and i < len(full) else v for i, v in enumerate(t)]
        if (
            any(v is None for v in t)
            or sum(v == -1 for v in t) > 1
            or any(
                v < -1 or v == 0
                for v in t  # type: ignore[operator]
            )
        ):
            raise self.fail(f"cannot resolve the shape {shown} for a {s.full} tensor")
        if s.batched:
            head, rest = t[0], t[1:]
            keeps_batch = (
                head == full[0]
                if full[0] is not None and head != -1
                else (head == -1 and -1 not in rest)
            )
            if t[0] == full[0] and full[0] is None:
                keeps_batch = True  # 0 copied the symbolic batch dimension
            if not keeps_batch:
                raise self.fail(
                    f"reshaping a {s.full} tensor to {shown} does not keep dimension 0 "
                    "(the batch); only per-sample reshapes are supported"
                )
        else:
            rest = t
        n = math.prod(s.shape)
        if -1 in rest:
            known = math.prod(v for v in rest if v != -1)
            if n % known:
                raise self.fail(f"cannot reshape {n} features to {shown}")
            rest = [n // known if v == -1 else v for v in rest]
        if math.prod(rest) != n:
            raise self.fail(f"cannot reshape {n} features ({s.full}) to {shown}")
        s.shape = tuple(rest) if rest else (1,)

    # -- affine ops ----------------------------------------------------------------------------
    def _vector_input(self, op: str) -> int:
        if len(self.state.shape) != 1:
            raise self.fail(f"{op} needs one sample to be a flat vector, got {self.state.full}")
        return self.state.shape[0]

    def _weights(self, slot: int) -> np.ndarray:
        w = self.consts.get(slot)
        if w is None or w.dtype.kind != "f" or w.ndim != 2:
            got = "none" if w is None else f"{w.dtype} of shape {w.shape}"
            raise self.fail(f"expected a 2-D float constant at input {slot}, got {got}")
        return w

    def op_Gemm(self) -> None:
        self.need_slot(0)
        if not self.state.batched:
            raise self.fail(f"Gemm needs a 2-D (batch, features) input, got {self.state.full}")
        k = self._vector_input("Gemm")
        alpha = float(self.attrs.get("alpha", 1.0))
        beta = float(self.attrs.get("beta", 1.0))
        b = self._weights(1)
        if self.attrs.get("transB", 0):
            b = b.T
        if b.shape[0] != k:
            raise self.fail(f"B gives {b.shape[0]} rows for {k} features")
        n = b.shape[1]
        c = self.consts.get(2)
        bias = None
        if c is not None:
            if c.dtype.kind != "f" or c.ndim > 2:
                raise self.fail(f"C must be a float scalar, vector or matrix, got {c.shape}")
            if c.ndim == 2:
                if c.shape[0] != 1:
                    raise self.fail(
                        f"C has {c.shape[0]} rows: a bias per batch row is not a per-sample model"
                    )
                c = c[0]
            if c.size == 1:
                c = np.full(n, float(c.reshape(-1)[0]))
            if c.shape != (n,):
                raise self.fail(f"C of shape {c.shape} does not broadcast to {n} outputs")
            bias = beta * c
        self.builder.affine(alpha * b, bias, name=self.node.name or self.label)
        self.state.shape = (n,)

    def op_MatMul(self) -> None:
        self.need_slot(0)
        k = self._vector_input("MatMul")
        b = self._weights(1)
        if b.shape[0] != k:
            raise self.fail(f"B gives {b.shape[0]} rows for {k} features")
        self.builder.affine(b, None, name=self.node.name or self.label)
        self.state.shape = (b.shape[1],)

    def op_Add(self) -> None:
        s = self.state
        c = self.consts[1 - self.slot]
        if c.dtype.kind != "f":
            raise self.fail(f"the added constant has dtype {c.dtype}; expected float")
        rank = len(s.shape) + s.batched
        if c.ndim > rank:
            raise self.fail(f"a constant of shape {c.shape} does not broadcast to {s.full}")
        c = c.reshape((1,) * (rank - c.ndim) + c.shape)
        if s.batched:
            if c.shape[0] != 1:
                raise self.fail(
                    f"the constant of shape {c.shape} differs per batch row; expected one bias "
                    "for every sample"
                )
            c = c[0]
        try:
            per_sample = np.broadcast_to(c, s.shape)
        except ValueError:
            raise self.fail(
                f"a constant of shape {c.shape} does not broadcast to {s.full}"
            ) from None
        self.builder.scale_shift(None, per_sample.reshape(-1), name=self.node.name or self.label)

    def op_BatchNormalization(self) -> None:
        self.need_slot(0)
        s = self.state
        if self.attrs.get("training_mode", 0):
            raise self.fail("training_mode=1; only inference is supported")
        if not self.attrs.get("spatial", 1):
            raise self.fail("spatial=0 is not supported")
        if not s.batched:
            raise self.fail(f"needs a (batch, channels, ...) input, got {s.full}")
        channels = s.shape[0]
        parts = []
        for slot, what in ((1, "scale"), (2, "B"), (3, "mean"), (4, "var")):
            v = self.consts.get(slot)
            if v is None or v.dtype.kind != "f" or v.shape != (channels,):
                got = "none" if v is None else f"shape {v.shape}"
                raise self.fail(f"{what} must be {channels} float values, got {got}")
            parts.append(v)
        scale, shift, mean, var = parts
        eps = float(self.attrs.get("epsilon", 1e-5))
        if np.any(var + eps <= 0.0):
            raise self.fail("var + epsilon must be positive")
        factor = scale / np.sqrt(var + eps)
        offset = shift - mean * factor
        spread = math.prod(s.shape[1:])
        self.builder.scale_shift(
            np.repeat(factor, spread), np.repeat(offset, spread), name=self.node.name or self.label
        )

    # -- activations ---------------------------------------------------------------------------
    def _act(self, act: Activation) -> None:
        self.need_slot(0)
        self.builder.activation(act, name=self.node.name or self.label)

    def op_Relu(self) -> None:
        self._act(Activation("relu"))

    def op_Sigmoid(self) -> None:
        self._act(Activation("sigmoid"))

    def op_Tanh(self) -> None:
        self._act(Activation("tanh"))

    def op_LeakyRelu(self) -> None:
        self._act(Activation("leaky_relu", alpha=float(self.attrs.get("alpha", 0.01))))

    def op_HardSigmoid(self) -> None:
        alpha = float(self.attrs.get("alpha", 0.2))
        beta = float(self.attrs.get("beta", 0.5))
        self._act(Activation("hard_sigmoid", alpha=alpha, beta=beta))

    def op_Clip(self) -> None:
        # Missing bounds are the element type's extremes (the ONNX default).
        info = np.finfo(np.float32 if self.state.elem_type == _FLOAT else np.float64)
        lo, hi = float(info.min), float(info.max)
        if self.opset < 11:
            lo = float(self.attrs.get("min", lo))
            hi = float(self.attrs.get("max", hi))
        else:
            for slot in (1, 2):
                v = self.consts.get(slot)
                if v is None:
                    continue
                if v.size != 1 or v.dtype.kind != "f":
                    raise self.fail(f"bound {slot} must be one float, got shape {v.shape}")
                if slot == 1:
                    lo = float(v.reshape(-1)[0])
                else:
                    hi = float(v.reshape(-1)[0])
        if lo > hi:
            raise self.fail(f"min {lo!r} > max {hi!r} is not supported")
        self._act(Activation("clip", alpha=lo, beta=hi))

    def op_Softmax(self) -> None:
        s = self.state
        rank = len(s.shape) + s.batched
        default = -1 if self.opset >= 13 else 1
        axis = int(self.attrs.get("axis", default))
        axis = axis + rank if axis < 0 else axis
        # Opsets < 13 flatten from `axis` on, so there the rows must be the samples.
        ok = axis == rank - 1 and len(s.shape) == 1 if self.opset >= 13 else axis == int(s.batched)
        if not ok:
            raise self.fail(
                f"Softmax(axis={self.attrs.get('axis', default)}) of a {s.full} tensor is not "
                "over one sample's features"
            )
        self._act(Activation("softmax"))


def _dims(dims: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
