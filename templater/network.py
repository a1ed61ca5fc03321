"""Network: the template filled with weights, and its numpy reference forward pass.

The reference pass is the living definition of what every generated program computes. It fixes
the summation order (each neuron starts at its bias and adds `x[i] * w[i, j]` for i = 0, 1, ...;
window statistics are summed in STAT_LANES interleaved lanes, see `lane_sum`), so a program that
keeps that order agrees bit for bit.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from templater.errors import MalformedModelError, TooLargeError, UnsupportedError, UsageError

# Documented limits (README "Limits"). Checked from declared sizes before anything is allocated.
MAX_PARAMETERS = 10_000_000
MAX_LAYERS = 64
MAX_WIDTH = 1_000_000
# Weights above this are refused: with inputs of order 1 a program could overflow to inf.
MAX_ABS_WEIGHT = 1e12

ACTIVATIONS = (
    "identity",
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "hard_sigmoid",
    "step",
    "clip",
    "softmax",
)
# Parameters each activation takes, with their defaults.
_ACTIVATION_PARAMS: dict[str, dict[str, float]] = {
    "leaky_relu": {"alpha": 0.01},
    "hard_sigmoid": {"alpha": 0.2, "beta": 0.5},
    "clip": {"alpha": 0.0, "beta": 6.0},  # lower and upper bound (relu6 by default)
}
# Activations computed with exp/tanh: targets agree with the reference within a tolerance only,
# since libm, numpy's SIMD kernels and CPython's pow may differ in the last bit.
TRANSCENDENTAL = frozenset({"sigmoid", "tanh", "softmax"})

HEADS = ("binary", "multiclass", "regression")
NORMALIZATIONS = ("none", "window")


@dataclass(frozen=True)
class Activation:
    """An activation by name, with its parameters (alpha: slope, beta: offset) filled in."""

    name: str
    alpha: float | None = None
    beta: float | None = None

    def __post_init__(self) -> None:
        if self.name not in ACTIVATIONS:
            raise UnsupportedError(
                f"unknown activation {self.name!r}; supported: {', '.join(ACTIVATIONS)}"
            )
        defaults = _ACTIVATION_PARAMS.get(self.name, {})
        for key in ("alpha", "beta"):
            value = getattr(self, key)
            if key not in defaults:
                if value is not None:
                    raise MalformedModelError(f"activation {self.name!r} takes no {key}")
                continue
            if value is None:
                value = defaults[key]
            value = _finite_float(value, f"activation {self.name!r} {key}")
            object.__setattr__(self, key, value)
        if self.name == "clip" and not self.alpha <= self.beta:
            raise MalformedModelError(f"clip needs lower <= upper, got {self.alpha} > {self.beta}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        for key in ("alpha", "beta"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def apply(self, h: np.ndarray) -> np.ndarray:
        """The reference definition of the activation, row-wise on a 2-D array, in the float
        type of `h` (float32: the parameters rounded to float32 once, every operation float32)."""
        name = self.name
        f = h.dtype.type
        zero, one = f(0.0), f(1.0)
        alpha = None if self.alpha is None else f(self.alpha)
        beta = None if self.beta is None else f(self.beta)
        if name == "identity":
            return h
        if name == "relu":  # NaN -> 0.0, exactly like `h if h > 0.0 else 0.0`
            return np.where(h > zero, h, zero)
        if name == "leaky_relu":
            return np.where(h > zero, h, alpha * h)
        if name == "step":
            return np.where(h > zero, one, zero)
        if name == "hard_sigmoid":
            t = alpha * h + beta
            return np.where(t < zero, zero, np.where(t > one, one, t))
        if name == "clip":
            return np.where(h < alpha, alpha, np.where(h > beta, beta, h))
        if name == "sigmoid":
            # The overflow-free form the programs use: exp of a non-positive number only.
            e = np.exp(-np.abs(h))
            return np.where(h >= zero, one / (one + e), e / (one + e))
        if name == "tanh":
            return np.tanh(h)
        if name == "softmax":
            e = np.exp(h - h.max(axis=1, keepdims=True))
            return e / sequential_sum(e)[:, None]
        raise AssertionError(name)  # pragma: no cover - guarded in __post_init__


@dataclass(frozen=True, eq=False)
class Dense:
    """A fully connected layer: out[j] = act(bias[j] + sum_i x[i] * weights[i, j])."""

    weights: np.ndarray  # (n_inputs, n_outputs)
    bias: np.ndarray  # (n_outputs,)
    activation: Activation = field(default_factory=lambda: Activation("identity"))
    name: str = ""  # where it came from (e.g. an ONNX node); never becomes code

    def __post_init__(self) -> None:
        where = f"layer {self.name!r}" if self.name else "layer"
        w = _float_array(self.weights, f"{where} weights", ndim=2)
        b = _float_array(self.bias, f"{where} bias", ndim=1)
        if b.shape[0] != w.shape[1]:
            raise MalformedModelError(
                f"{where}: bias has {b.shape[0]} values but weights have {w.shape[1]} outputs"
            )
        if 0 in w.shape:
            raise MalformedModelError(f"{where} is empty: weights have shape {w.shape}")
        if isinstance(self.activation, str):
            object.__setattr__(self, "activation", Activation(self.activation))
        if not isinstance(self.name, str):
            raise MalformedModelError(
                f"layer name must be a string, got {type(self.name).__name__}"
            )
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "bias", b)

    @property
    def n_inputs(self) -> int:
        return int(self.weights.shape[0])

    @property
    def n_outputs(self) -> int:
        return int(self.weights.shape[1])

    def apply(self, h: np.ndarray, exact: bool = True) -> np.ndarray:
        """The layer in the float type of `h` (float32: weights rounded to float32 once)."""
        weights, bias = self.weights, self.bias
        if h.dtype != np.float64:
            weights, bias = weights.astype(h.dtype), bias.astype(h.dtype)
        if exact:
            # Input-major accumulation: each neuron sums in the order the programs use.
            acc = np.repeat(bias[None, :], h.shape[0], axis=0)
            for i in range(self.n_inputs):
                acc += h[:, i : i + 1] * weights[i]
        else:
            acc = h @ weights + bias
        return self.activation.apply(acc)


@dataclass(frozen=True)
class Normalization:
    """How raw inputs are normalised before the first layer, inside every program.

    `none`: as given. `window`: per-sample (x - mean) * (1 / (std + eps)), with the sums of the
    mean and variance taken by `lane_sum` (so a window of pixels is contrast-normalised). The
    reciprocal is taken once per window: a division per input cost as much as the sums.
    """

    kind: str = "none"
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZATIONS:
            raise UnsupportedError(
                f"unknown normalization {self.kind!r}; supported: {', '.join(NORMALIZATIONS)}"
            )
        eps = _finite_float(self.eps, "normalization eps")
        if eps <= 0.0:
            raise MalformedModelError(f"normalization eps must be positive, got {eps!r}")
        object.__setattr__(self, "eps", eps)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "eps": self.eps}

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return x
        f = x.dtype.type  # float32 inputs: every operation in float32, eps rounded once
        n = f(x.shape[1])
        mean = lane_sum(x) / n
        d = x - mean[:, None]
        std = np.sqrt(lane_sum(d * d) / n)
        return d * (f(1.0) / (std + f(self.eps)))[:, None]


@dataclass(frozen=True)
class Head:
    """What the outputs mean: `binary` (one score, decision score > threshold), `multiclass`
    (argmax, first maximum wins; optional labels) or `regression` (the outputs themselves)."""

    kind: str = "binary"
    threshold: float | None = None
    labels: tuple[str | int, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in HEADS:
            raise UnsupportedError(f"unknown head {self.kind!r}; supported: {', '.join(HEADS)}")
        if self.kind == "binary":
            threshold = 0.0 if self.threshold is None else self.threshold
            object.__setattr__(self, "threshold", _finite_float(threshold, "head threshold"))
        elif self.threshold is not None:
            raise MalformedModelError(f"a {self.kind} head has no threshold")
        if self.labels is not None:
            if self.kind == "regression":
                raise MalformedModelError(f"a {self.kind} head has no labels")
            labels = tuple(self.labels)
            if self.kind == "binary" and len(labels) != 2:  # (below threshold, above it)
                raise MalformedModelError(f"a binary head has 2 labels, got {len(labels)}")
            for label in labels:
                if isinstance(label, bool) or not isinstance(label, (str, int)):
                    raise MalformedModelError(
                        f"class labels must be strings or integers, got {type(label).__name__}"
                    )
            object.__setattr__(self, "labels", labels)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.threshold is not None:
            out["threshold"] = self.threshold
        if self.labels is not None:
            out["labels"] = list(self.labels)
        return out


@dataclass(frozen=True, eq=False)
class Network:
    """An input size (and image shape), a normalisation, Dense layers, and a head."""

    input_size: int
    layers: tuple[Dense, ...]
    head: Head = field(default_factory=Head)
    normalization: Normalization = field(default_factory=Normalization)
    input_shape: tuple[int, ...] | None = None
    name: str = ""  # free text; reaches a generated file only through repr()
    metadata: dict[str, Any] = field(default_factory=dict)  # provenance; not part of the digest

    def __post_init__(self) -> None:
        if isinstance(self.input_size, bool) or not isinstance(self.input_size, (int, np.integer)):
            raise MalformedModelError(f"input size must be an integer, got {self.input_size!r}")
        object.__setattr__(self, "input_size", int(self.input_size))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not isinstance(self.name, str):
            raise MalformedModelError(
                f"model name must be a string, got {type(self.name).__name__}"
            )
        check_sizes(self.input_size, [(d.n_inputs, d.n_outputs) for d in self.layers])
        previous = self.input_size
        for index, layer in enumerate(self.layers):
            if not isinstance(layer, Dense):
                raise UnsupportedError(f"layer {index} is a {type(layer).__name__}, not Dense")
            if layer.n_inputs != previous:
                source = "the input" if index == 0 else f"layer {index - 1}"
                raise MalformedModelError(
                    f"shapes do not chain: layer {index} expects {layer.n_inputs} inputs "
                    f"but {source} gives {previous}"
                )
            if layer.activation.name == "softmax" and index != len(self.layers) - 1:
                raise MalformedModelError(
                    f"layer {index}: softmax is only supported on the last layer"
                )
            bad = np.flatnonzero(np.abs(layer.weights) > MAX_ABS_WEIGHT)
            bad_b = np.flatnonzero(np.abs(layer.bias) > MAX_ABS_WEIGHT)
            if bad.size or bad_b.size:
                what, idx = ("weights", bad) if bad.size else ("bias", bad_b)
                shape = layer.weights.shape if bad.size else layer.bias.shape
                raise MalformedModelError(
                    f"layer {index} {what}: {idx.size} value(s) exceed the bound "
                    f"|w| <= {MAX_ABS_WEIGHT:g}, first at index "
                    f"{tuple(int(i) for i in np.unravel_index(idx[0], shape))}"
                )
            previous = layer.n_outputs
        if self.input_shape is not None:
            shape = tuple(int(s) for s in self.input_shape)
            if any(s <= 0 for s in shape) or math.prod(shape) != self.input_size:
                raise MalformedModelError(
                    f"input shape {shape} does not hold {self.input_size} inputs"
                )
            object.__setattr__(self, "input_shape", shape)
        if self.head.kind == "binary" and previous != 1:
            raise MalformedModelError(
                f"a binary head needs 1 output, the last layer gives {previous}"
            )
        if self.head.kind == "multiclass":
            if previous < 2:
                raise MalformedModelError(f"a multiclass head needs 2+ outputs, got {previous}")
            if self.head.labels is not None and len(self.head.labels) != previous:
                raise MalformedModelError(
                    f"the head has {len(self.head.labels)} labels for {previous} outputs"
                )

    # -- sizes -------------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        return self.layers[-1].n_outputs

    @property
    def n_parameters(self) -> int:
        return sum(d.weights.size + d.bias.size for d in self.layers)

    @property
    def n_multiply_adds(self) -> int:
        return sum(d.weights.size for d in self.layers)

    @property
    def architecture(self) -> str:
        """Like `625-16-1`."""
        return "-".join(str(n) for n in [self.input_size] + [d.n_outputs for d in self.layers])

    # -- the reference forward pass ----------------------------------------------------------
    def check_inputs(self, x: Any) -> tuple[np.ndarray, bool]:
        """`x` as a float64 (n, input_size) array, and whether it was a single sample."""
        arr = np.asarray(x)
        if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
            raise UsageError(f"inputs must be numbers, got dtype {arr.dtype}")
        single = arr.ndim == 1
        arr = np.atleast_2d(arr).astype(np.float64, copy=False)
        if arr.ndim != 2 or arr.shape[1] != self.input_size:
            raise UsageError(
                f"expected inputs of length {self.input_size}, got an array of shape {np.shape(x)}"
            )
        return arr, single

    def forward(self, x: Any, exact: bool = True, dtype: Any = np.float64) -> np.ndarray:
        """All outputs. `exact=False` uses BLAS (fast, but not the programs' summation order).

        `dtype=np.float32` is the reference of `--dtype float32` programs: inputs, weights, biases
        and activation and normalisation parameters each rounded to float32 once, then the same
        operations in the same order, all in float32; the outputs are float32.
        """
        h, single = self.check_inputs(x)
        h = h.astype(_reference_dtype(dtype), copy=False)
        h = self.normalization.apply(h)
        for layer in self.layers:
            h = layer.apply(h, exact=exact)
        return h[0] if single else h

    def score(self, x: Any, exact: bool = True, dtype: Any = np.float64) -> np.ndarray | float:
        """The binary score (or the single regression output)."""
        out = self.forward(x, exact=exact, dtype=dtype)
        if self.n_outputs != 1:
            raise UsageError(f"score() needs a single output; this model has {self.n_outputs}")
        return float(out[0]) if out.ndim == 1 else out[:, 0]

    def decide(self, x: Any, exact: bool = True, dtype: Any = np.float64) -> np.ndarray | bool:
        """score > threshold; in float32 the threshold is rounded to float32 too."""
        if self.head.kind != "binary":
            raise UsageError(f"decide() needs a binary head; this model's is {self.head.kind}")
        s = self.score(x, exact=exact, dtype=dtype)
        threshold = float(_reference_dtype(dtype)(self.head.threshold))
        return bool(s > threshold) if isinstance(s, float) else s > threshold

    def predict(self, x: Any, exact: bool = True, dtype: Any = np.float64) -> np.ndarray | int:
        if self.head.kind != "multiclass":
            raise UsageError(f"predict() needs a multiclass head; this model's is {self.head.kind}")
        out = self.forward(x, exact=exact, dtype=dtype)
        return int(np.argmax(out)) if out.ndim == 1 else np.argmax(out, axis=1)

    # -- identity and files ------------------------------------------------------------------
    def digest(self) -> str:
        """A hash of what the program computes (weights, structure, head); not name or metadata."""
        from templater.modelfile import network_digest

        return network_digest(self)

    def save(self, path: Any) -> None:
        """Write the model file atomically; the same network always gives the same bytes."""
        from templater.modelfile import save

        save(self, path)

    def with_layers(self, layers: tuple[Dense, ...], **changes: Any) -> Network:
        """A copy with other layers (and optionally other fields)."""
        fields = dict(
            input_size=self.input_size,
            layers=layers,
            head=self.head,
            normalization=self.normalization,
            input_shape=self.input_shape,
            name=self.name,
            metadata=dict(self.metadata),
        )
        fields.update(changes)
        return Network(**fields)


def _reference_dtype(dtype: Any) -> type:
    """np.float64 or np.float32 (also given as a string); anything else is a UsageError."""
    try:
        kind = np.dtype(dtype)
    except TypeError:
        kind = None
    if kind not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise UsageError(f"the reference computes in float64 or float32, not {dtype!r}")
    return kind.type


# Lanes of a window statistic's sum. One running sum over 625 pixels is a chain of 625 dependent
# additions, 3 cycles each (the mean and variance took 1.2 us, more than the face program's 10,000
# multiply-adds); 8 independent chains keep both of a core's adders busy.
STAT_LANES = 8


def lane_sum(a: np.ndarray) -> np.ndarray:
    """Row sums in the programs' order: lane k starts at 0.0 and adds columns k, k + 8, ... of
    the whole groups of STAT_LANES, left to right; the lanes are combined as
    ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); then the columns past the last whole
    group are added left to right."""
    rows, n = a.shape
    whole = n - n % STAT_LANES
    total = np.zeros(rows, dtype=a.dtype)
    if whole:
        lanes = np.zeros((rows, STAT_LANES), dtype=a.dtype)
        for start in range(0, whole, STAT_LANES):
            lanes = lanes + a[:, start : start + STAT_LANES]
        total = combine_lanes([lanes[:, k] for k in range(STAT_LANES)], operator.add)
    for i in range(whole, n):
        total = total + a[:, i]
    return total


def combine_lanes(lanes: list, add: Callable[[Any, Any], Any]) -> Any:
    """((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)): pairs, then pairs of pairs (`add`
    makes the sum: numpy arrays here, program statements in templater.lower)."""
    while len(lanes) > 1:
        lanes = [add(lanes[k], lanes[k + 1]) for k in range(0, len(lanes), 2)]
    return lanes[0]


def sequential_sum(a: np.ndarray) -> np.ndarray:
    """Row sums of a 2-D array added left to right (np.sum is pairwise; cumsum is sequential)."""
    return np.cumsum(a, axis=1)[:, -1]


def check_sizes(input_size: int, shapes: list[tuple[int, int]]) -> None:
    """Refuse models beyond the limits, from sizes alone (used before reading any weights)."""
    if input_size <= 0:
        raise MalformedModelError(f"input size must be positive, got {input_size}")
    if not shapes:
        raise MalformedModelError("model has no layers")
    if len(shapes) > MAX_LAYERS:
        raise TooLargeError(f"model has {len(shapes)} layers; the limit is {MAX_LAYERS}")
    total = 0
    for index, (n_in, n_out) in enumerate(shapes):
        for n in (n_in, n_out):
            if n > MAX_WIDTH:
                raise TooLargeError(f"layer {index} has width {n}; the limit is {MAX_WIDTH}")
        total += n_in * n_out + n_out
    if total > MAX_PARAMETERS:
        raise TooLargeError(f"model has {total:,} parameters; the limit is {MAX_PARAMETERS:,}")


def check_finite(arr: np.ndarray, what: str) -> None:
    """Refuse NaN and infinity, naming how many and the first index."""
    finite = np.isfinite(arr)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        first = tuple(int(i) for i in np.unravel_index(bad[0], arr.shape))
        raise MalformedModelError(
            f"{what}: {bad.size} non-finite value(s) (NaN or infinity), first at index {first}"
        )


def _finite_float(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise MalformedModelError(f"{what} must be a number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise MalformedModelError(f"{what} must be finite, got {out!r}")
    return out


def _float_array(value: Any, what: str, ndim: int) -> np.ndarray:
    """A finite, read-only float64 copy; float32 widens exactly, other dtypes are refused."""
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise UnsupportedError(
            f"{what}: expected float32 or float64 values, got dtype {arr.dtype} "
            "(convert explicitly; integers, float16, complex and objects are refused)"
        )
    if arr.ndim != ndim:
        raise MalformedModelError(f"{what}: expected a {ndim}-D array, got shape {arr.shape}")
    out = np.array(arr, dtype=np.float64, order="C")  # copies; native byte order
    check_finite(out, what)
    out.setflags(write=False)
    return out
