"""Chain assembly shared by the importers: affine maps, scales and activations -> Dense layers."""

from __future__ import annotations

from typing import Any

import numpy as np

from templater.errors import MalformedModelError
from templater.network import Activation, Dense, Head, Network

# Activations after which a one-output score is a probability: the decision is score > 0.5.
_PROBABILITY_OUTPUTS = frozenset({"sigmoid", "hard_sigmoid"})


class ChainBuilder:
    """Collects a chain of affine maps and elementwise activations into Dense layers.

    An affine map opens a layer; a bias or a per-feature scale right after it is folded into it;
    the first activation closes it. An activation or scale with no open affine map becomes a
    layer with identity (or diagonal) weights, which computes it exactly for finite inputs.
    Consecutive affine maps stay separate layers, so each keeps its own summation order.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.layers: list[Dense] = []
        self._w: np.ndarray | None = None
        self._b: np.ndarray | None = None
        self._act: Activation | None = None
        self._name = ""

    def _flush(self) -> None:
        if self._w is not None:
            act = self._act or Activation("identity")
            self.layers.append(Dense(self._w, self._b, act, name=self._name))
        self._w = self._b = self._act = None
        self._name = ""

    def _open(self, w: np.ndarray, b: np.ndarray, name: str) -> None:
        self._flush()
        self._w = np.array(w, dtype=np.float64)
        self._b = np.array(b, dtype=np.float64)
        self._name = name
        self.width = int(self._w.shape[1])

    @property
    def _foldable(self) -> bool:
        return self._w is not None and self._act is None

    def affine(self, w: np.ndarray, b: np.ndarray | None, name: str) -> None:
        """y = x @ w + b, with w of shape (width, n_out)."""
        w = np.asarray(w, dtype=np.float64)
        if w.ndim != 2 or w.shape[0] != self.width:
            raise MalformedModelError(
                f"{name}: weights of shape {w.shape} do not take {self.width} inputs"
            )
        if b is None:
            b = np.zeros(w.shape[1])
        self._open(w, b, name)

    def scale_shift(self, scale: np.ndarray | None, shift: np.ndarray | None, name: str) -> None:
        """y = x * scale + shift, per feature (a bias, or a folded batch normalisation)."""
        n = self.width
        s = np.ones(n) if scale is None else np.asarray(scale, dtype=np.float64)
        t = np.zeros(n) if shift is None else np.asarray(shift, dtype=np.float64)
        if s.shape != (n,) or t.shape != (n,):
            raise MalformedModelError(f"{name}: expected {n} values per feature")
        if self._foldable:
            assert self._w is not None and self._b is not None
            if scale is not None:
                self._w = self._w * s[None, :]
                self._b = self._b * s
            self._b = self._b + t
        else:
            self._open(np.diag(s), t, name)

    def activation(self, act: Activation, name: str) -> None:
        if not self._foldable:
            self._open(np.eye(self.width), np.zeros(self.width), name)
        self._act = act

    def network(
        self,
        input_size: int,
        head: Head | None,
        name: str,
        metadata: dict[str, Any],
        input_shape: tuple[int, ...] | None = None,
    ) -> Network:
        self._flush()
        if not self.layers:
            # A chain of no-ops (Identity, Flatten, Dropout): one exact identity layer.
            self.layers.append(Dense(np.eye(self.width), np.zeros(self.width), name=name))
        if head is None:
            head = default_head(self.layers[-1])
        if input_shape is not None and len(input_shape) < 2:
            input_shape = None
        return Network(
            input_size=input_size,
            layers=tuple(self.layers),
            head=head,
            input_shape=input_shape,
            name=name,
            metadata=metadata,
        )


def default_head(last: Dense) -> Head:
    """One output: binary (threshold 0.5 after a sigmoid, else 0.0). Several: multiclass."""
    if last.n_outputs == 1:
        threshold = 0.5 if last.activation.name in _PROBABILITY_OUTPUTS else 0.0
        return Head("binary", threshold=threshold)
    return Head("multiclass")
