"""Diffing convolutional models: per layer and output channel, the kernel entries that changed
and by how much; per head, how far outputs move on random images and, for a softmax head, how
many positions change their argmax (the class a map cell or a vector votes for)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from templater.convnet import LAYER_KINDS, Act, ConvNetwork
from templater.errors import UsageError
from templater.verify.conv import random_images


@dataclass(frozen=True)
class ChannelChange:
    where: str  # "trunk" or a head's name
    layer: int
    kind: str
    channel: int
    changed: int  # entries (kernel weights, bias, slope) that differ
    max_change: float


@dataclass(frozen=True)
class HeadChange:
    name: str
    max_output_change: float
    argmax_flips: int | None  # softmax heads: positions whose top class changed
    positions: int


@dataclass(frozen=True)
class ConvDiff:
    a: str
    b: str
    channels: tuple[ChannelChange, ...]
    heads: tuple[HeadChange, ...]
    images: int

    @property
    def identical(self) -> bool:
        return not self.channels and all(h.max_output_change == 0 for h in self.heads)

    def summary_lines(self) -> list[str]:
        out = [f"structure: {len(self.channels)} output channel(s) changed"]
        for c in self.channels:
            out.append(
                f"  {c.where} layer {c.layer} ({c.kind}) channel {c.channel}: {c.changed} "
                f"value(s) changed, max |change| {c.max_change:.3g}"
            )
        out.append(f"behaviour on {self.images} random images:")
        for h in self.heads:
            flips = "" if h.argmax_flips is None else (
                f", top class changed at {h.argmax_flips} of {h.positions} positions"
            )
            out.append(f"  head {h.name!r}: max |output change| {h.max_output_change:.3g}{flips}")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "identical": self.identical,
            "channels": [c.__dict__ for c in self.channels],
            "heads": [h.__dict__ for h in self.heads],
            "images": self.images,
        }


def _channel_arrays(layer: Any) -> list[np.ndarray]:
    """Each output channel's values: (kernel weights and bias) or a slope, as rows."""
    if hasattr(layer, "slopes"):
        return [layer.slopes[:, None]]
    if hasattr(layer, "weights"):
        w = layer.weights
        rows = w.reshape(w.shape[0], -1) if w.ndim == 4 else w.T  # dense: one row per unit
        return [rows, layer.bias[:, None]]
    return []


def structure(a: ConvNetwork, b: ConvNetwork) -> tuple[ChannelChange, ...]:
    la, lb = a.layers(), b.layers()
    kinds = [(w, i, LAYER_KINDS[type(x)]) for w, i, x in la]
    if kinds != [(w, i, LAYER_KINDS[type(x)]) for w, i, x in lb]:
        raise UsageError("the two networks have different layers; diff needs the same template")
    out = []
    for (where, index, x), (_, _, y) in zip(la, lb, strict=True):
        ax, ay = _channel_arrays(x), _channel_arrays(y)
        if [v.shape for v in ax] != [v.shape for v in ay]:
            raise UsageError(f"{where} layer {index}: shapes differ")
        if not ax:
            continue
        delta = np.abs(np.hstack(ay) - np.hstack(ax))
        for channel in np.flatnonzero((delta != 0).any(axis=1)):
            out.append(ChannelChange(
                where, index, LAYER_KINDS[type(x)], int(channel),
                int((delta[channel] != 0).sum()), float(delta[channel].max()),
            ))
    return tuple(out)


def diff_conv(a: ConvNetwork, b: ConvNetwork, label_a: str, label_b: str, count: int = 50,
              seed: int = 0) -> ConvDiff:
    changes = structure(a, b)
    images = random_images(a, count, seed)
    heads = []
    for name, layers in a.heads:
        softmax = any(isinstance(x, Act) and x.activation.name == "softmax" for x in layers)
        worst, flips, positions = 0.0, 0, 0
        for image in images:
            ra, rb = a.forward(image)[name], b.forward(image)[name]
            worst = max(worst, float(np.abs(ra - rb).max()))
            if softmax:
                flips += int((ra.argmax(axis=0) != rb.argmax(axis=0)).sum())
                positions += int(np.prod(ra.shape[1:]))
        heads.append(HeadChange(name, worst, flips if softmax else None, positions))
    return ConvDiff(label_a, label_b, changes, tuple(heads), len(images))
