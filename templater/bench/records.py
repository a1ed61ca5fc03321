"""Bench records: the settings of a run, its measured rows, and the networks it measures."""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from templater.errors import UsageError
from templater.network import Dense, Head, Network

ARCHS = ("625-8-1", "625-32-1", "625-128-1", "625-64-32-1")
SCAN_SCALES = (1.0, 0.75, 0.5)
SCAN_STRIDE = 2
# Compile time against size: 625-h-1 networks from ~1k to ~1M parameters.
SWEEP_HIDDEN = (2, 16, 160, 1600)
# A random network's threshold: this fraction of the photo's windows scores above it.
KEEP_FRACTION = 0.001


@dataclass(frozen=True)
class BenchConfig:
    archs: tuple[str, ...] = ARCHS
    quick: bool = False
    layout: str = "auto"
    seed: int = 0
    scan: bool = True  # needs 625-input networks and scikit-image
    onnx: bool = True  # needs onnx and onnxruntime
    sweep: bool = False  # compile time against size, 1k to 1M parameters (slow)
    # program float types; float32 programs' rows are labelled "<arch> float32" and get float32
    # inputs (as onnxruntime and numpy float32 do), float64 ones float64 inputs
    dtypes: tuple[str, ...] = ("float64",)

    @property
    def repeats(self) -> int:
        return 3 if self.quick else 9

    @property
    def batch_size(self) -> int:
        return 1_000 if self.quick else 10_000

    @property
    def loop_rows(self) -> int:
        return 500 if self.quick else 4_000


@dataclass
class Row:
    """One measured figure, its baseline from the same run, and the speedup over it."""

    network: str
    section: str
    what: str
    value: float
    unit: str
    baseline: str = ""
    baseline_value: float | None = None
    speedup: float | None = None  # > 1: the program is faster
    note: str = ""


@dataclass
class Results:
    config: dict[str, Any]
    machine: dict[str, Any]
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(
            {
                "config": self.config,
                "machine": self.machine,
                "rows": [asdict(r) for r in self.rows],
            },
            indent=1,
            sort_keys=True,
        )


def parse_arch(arch: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in arch.split("-"))
    except ValueError:
        raise UsageError(f"architecture {arch!r} must look like 625-32-1") from None
    if len(sizes) < 2 or sizes[-1] != 1 or min(sizes) < 1:
        raise UsageError(f"architecture {arch!r}: need an input size, layers, and 1 output")
    return sizes


def random_network(arch: str, seed: int = 0, image: np.ndarray | None = None) -> Network:
    """A ReLU network with He-scaled weights from a fixed seed; with a photo, its threshold lets
    about KEEP_FRACTION of the photo's windows through (so a scan finds a few boxes)."""
    sizes = parse_arch(arch)
    rng = np.random.default_rng(seed)
    layers = []
    for k, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        last = k == len(sizes) - 2
        weights = rng.normal(0.0, math.sqrt(2.0 / n_in), (n_in, n_out))
        layers.append(Dense(weights, rng.normal(0.0, 0.1, n_out), "identity" if last else "relu"))
    side = math.isqrt(sizes[0])
    shape = (side, side) if side * side == sizes[0] else None
    net = Network(sizes[0], tuple(layers), Head("binary", 0.0), input_shape=shape, name=arch)
    if image is not None and shape == (25, 25):
        from templater.scan import windows

        _, pixels = windows(image, SCAN_STRIDE)
        threshold = float(np.quantile(net.forward(pixels, exact=False)[:, 0], 1 - KEEP_FRACTION))
        net = net.with_layers(net.layers, head=Head("binary", threshold))
    return net
