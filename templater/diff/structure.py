"""The structural diff: neurons matched layer by layer, and what changed in each."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

import numpy as np

from templater.diff.sides import LayerView, Side, live_neurons
from templater.naming import neuron as neuron_name


@dataclass(frozen=True)
class NeuronChange:
    layer: int
    a: str | None  # the neuron's name in A's program (None: added)
    b: str | None  # ... in B's (None: removed)
    status: str  # changed, added, removed, pruned, revived, renumbered
    weights_changed: int = 0
    max_abs_change: float = 0.0
    mean_abs_change: float = 0.0


@dataclass(frozen=True)
class LayerChange:
    layer: int
    a: str  # "dense 625 -> 16, relu"
    b: str
    neurons: tuple[NeuronChange, ...]
    unchanged: int  # neurons present on both sides with identical weights and bias


@dataclass(frozen=True)
class Structure:
    architecture: tuple[str, str]
    layers: tuple[LayerChange, ...]
    threshold: tuple[float | None, float | None]
    normalization: tuple[str, str]
    head: tuple[str, str]

    @property
    def changed(self) -> bool:
        return (
            self.architecture[0] != self.architecture[1]
            or any(lc.neurons or lc.a != lc.b for lc in self.layers)
            or self.threshold[0] != self.threshold[1]
            or self.normalization[0] != self.normalization[1]
            or self.head[0] != self.head[1]
        )


def structure(a: Side, b: Side) -> Structure:
    """Match neurons layer by layer and measure what changed."""
    rows = [(i, i) for i in range(a.n_inputs)]  # layer 1 reads the same inputs on both sides
    live_a, live_b = live_neurons(a.layers), live_neurons(b.layers)
    layers = []
    for k in range(max(len(a.layers), len(b.layers))):
        number = k + 1
        va = a.layers[k] if k < len(a.layers) else None
        vb = b.layers[k] if k < len(b.layers) else None
        if va is None or vb is None:
            only = va or vb
            assert only is not None
            status = "removed" if vb is None else "added"
            neurons = tuple(
                NeuronChange(
                    number,
                    neuron_name(number, "h", j, only.width) if va else None,
                    neuron_name(number, "h", j, only.width) if vb else None,
                    status,
                )
                for j in range(only.width)
            )
            layers.append(LayerChange(number, _layer_text(va), _layer_text(vb), neurons, 0))
            rows = []
            continue
        pairs = _match(va, vb, rows)
        changes, unchanged = [], 0
        la, lb = live_a[k], live_b[k]
        ia = np.array([r[0] for r in rows], dtype=np.int64)
        ib = np.array([r[1] for r in rows], dtype=np.int64)
        only_a = np.setdiff1d(np.arange(va.weights.shape[0]), ia)
        only_b = np.setdiff1d(np.arange(vb.weights.shape[0]), ib)
        for ja, jb in pairs:
            name_a = neuron_name(number, "h", ja, va.width) if ja is not None else None
            name_b = neuron_name(number, "h", jb, vb.width) if jb is not None else None
            if ja is None:
                changes.append(NeuronChange(number, None, name_b, "added"))
                continue
            if jb is None:
                changes.append(NeuronChange(number, name_a, None, "removed"))
                continue
            if la[ja] and not lb[jb]:
                changes.append(NeuronChange(number, name_a, name_b, "pruned"))
                continue
            if not la[ja] and lb[jb]:
                changes.append(NeuronChange(number, name_a, name_b, "revived"))
                continue
            if not la[ja]:
                unchanged += 1  # dead on both sides: nothing of it reaches a program
                continue
            pa = np.concatenate([[va.bias[ja]], va.weights[ia, ja]])
            pb = np.concatenate([[vb.bias[jb]], vb.weights[ib, jb]])
            delta = np.abs(pb - pa)
            gone = np.abs(va.weights[only_a, ja])
            new = np.abs(vb.weights[only_b, jb])
            n_changed = int(np.sum(delta != 0.0) + np.sum(gone != 0.0) + np.sum(new != 0.0))
            if n_changed == 0:
                if name_a != name_b:
                    changes.append(NeuronChange(number, name_a, name_b, "renumbered"))
                else:
                    unchanged += 1
                continue
            every = np.concatenate([delta, gone, new])
            changes.append(
                NeuronChange(
                    number, name_a, name_b, "changed", n_changed,
                    float(every.max()), float(every.mean()),
                )
            )
        layers.append(
            LayerChange(number, _layer_text(va), _layer_text(vb), tuple(changes), unchanged)
        )
        rows = [(ja, jb) for ja, jb in pairs if ja is not None and jb is not None]
    return Structure(
        (a.architecture, b.architecture),
        tuple(layers),
        (a.threshold, b.threshold),
        (a.normalization, b.normalization),
        (a.head, b.head),
    )


def _layer_text(view: LayerView | None) -> str:
    if view is None:
        return "(none)"
    return f"dense {view.weights.shape[0]} -> {view.width}, {view.activation}"


def _match(
    va: LayerView, vb: LayerView, rows: list[tuple[int, int]]
) -> list[tuple[int | None, int | None]]:
    """Pair A's neurons with B's. Same width: by index. Otherwise align identical neurons (bias
    and weights on the matched inputs) like lines of text, so removing a middle neuron shows as
    one removal plus renumbered neighbours; unmatched runs pair up by position."""
    if va.width == vb.width:
        return [(j, j) for j in range(va.width)]
    ia = [r[0] for r in rows]
    ib = [r[1] for r in rows]
    sig_a = [(va.bias[j], *va.weights[ia, j]) for j in range(va.width)]
    sig_b = [(vb.bias[j], *vb.weights[ib, j]) for j in range(vb.width)]
    pairs: list[tuple[int | None, int | None]] = []
    matcher = difflib.SequenceMatcher(None, sig_a, sig_b, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            pairs.extend(zip(range(a0, a1), range(b0, b1), strict=True))
            continue
        n = min(a1 - a0, b1 - b0)
        pairs.extend((a0 + t, b0 + t) for t in range(n))
        pairs.extend((j, None) for j in range(a0 + n, a1))
        pairs.extend((None, j) for j in range(b0 + n, b1))
    return pairs


