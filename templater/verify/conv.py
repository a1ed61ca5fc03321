"""Verifying a convolutional program: every head's output on random images against
ConvNetwork.forward, exact where the head involves no exp (softmax, sigmoid, tanh)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from templater.convnet import Act, ConvNetwork
from templater.programs import import_program
from templater.verify.tolerance import ATOL, ATOL32, RTOL, RTOL32, Tolerance, ulp_distance

TRANSCENDENTAL = ("softmax", "sigmoid", "tanh")
# Fully convolutional nets are checked on images of random sizes up to this many pixels a side.
MAX_SIDE = 64


@dataclass(frozen=True)
class HeadResult:
    name: str
    tolerance: Tolerance
    max_abs_error: float
    max_ulps: int  # in units of the program's dtype
    failures: int  # images with an output beyond the tolerance


@dataclass(frozen=True)
class ConvReport:
    model: str
    program: str
    target: str
    dtype: str
    images: int
    heads: tuple[HeadResult, ...]

    @property
    def passed(self) -> bool:
        return all(h.failures == 0 for h in self.heads)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "model": self.model,
            "program": self.program,
            "target": self.target,
            "dtype": self.dtype,
            "images": self.images,
            "heads": [
                {
                    "name": h.name,
                    "tolerance": h.tolerance.to_json(),
                    "max_abs_error": h.max_abs_error,
                    "max_ulps": h.max_ulps,
                    "failures": h.failures,
                }
                for h in self.heads
            ],
        }

    def lines(self) -> list[str]:
        out = [
            f"verify {self.program} against the reference of {self.model} "
            f"({self.target}, {self.dtype}), {self.images} random images"
        ]
        for h in self.heads:
            out.append(
                f"head {h.name!r}: max abs error {h.max_abs_error:.3g}, max ULP {h.max_ulps}; "
                f"tolerance {h.tolerance.describe()}"
                + (f"; FAIL on {h.failures} image(s)" if h.failures else "")
            )
        out.append(
            "OK: the program agrees with the reference"
            if self.passed
            else "FAIL: outputs beyond the tolerance"
        )
        return out


def head_tolerance(net: ConvNetwork, head: str, dtype: str) -> Tolerance:
    layers = dict(net.heads)[head]
    used = sorted(
        {
            layer.activation.name
            for layer in (*net.trunk, *layers)
            if isinstance(layer, Act) and layer.activation.name in TRANSCENDENTAL
        }
    )
    if not used:
        reason = f"piecewise-linear layers in the reference order ({dtype})"
        return Tolerance(True, 0.0, 0.0, reason)
    rtol, atol = (RTOL32, ATOL32) if dtype == "float32" else (RTOL, ATOL)
    return Tolerance(False, rtol, atol, f"{', '.join(used)} use exp, whose last bits differ")


def random_images(net: ConvNetwork, count: int, seed: int) -> list[np.ndarray]:
    """Images in [-1, 1] of the net's size, or of random sizes from its receptive field up."""
    rng = np.random.default_rng(seed)
    rf = net.receptive_field()
    images = []
    for _ in range(count):
        rows, cols = net.size or (
            int(rng.integers(rf[0], max(rf[0], MAX_SIDE) + 1)),
            int(rng.integers(rf[1], max(rf[1], MAX_SIDE) + 1)),
        )
        shape = (rows, cols, net.channels) if net.input_layout == "hwc" else (
            net.channels, rows, cols)
        images.append(rng.uniform(-1.0, 1.0, shape))
    return images


def verify_conv(
    net: ConvNetwork,
    program: str | None,
    target: str = "python",
    layout: str = "auto",
    count: int = 200,
    seed: int = 0,
    model_label: str = "<model>",
    dtype: str = "float64",
) -> ConvReport:
    """Run PROGRAM (or `net` compiled now) on `count` random images and judge every head."""
    from templater.conv_compiler import compile_conv

    with tempfile.TemporaryDirectory() as folder:
        if program is None:
            path = Path(folder) / f"conv_{target}_{dtype}.py"
            path.write_text(compile_conv(net, target, layout, dtype), encoding="utf-8")
            label = f"<{target} {dtype} program compiled now>"
        else:
            path, label = Path(program), program
        module = import_program(path)
        dtype = getattr(module, "DTYPE", dtype)
        target = "numba" if hasattr(module, "_forward") else "python"
        results: dict[str, list[float]] = {name: [0.0, 0, 0] for name, _ in net.heads}
        images = random_images(net, count, seed)
        for image in images:
            got = module.forward(image)
            reference = net.forward(image, dtype=np.dtype(dtype).type)
            for name, _ in net.heads:
                tol = head_tolerance(net, name, dtype)
                p = np.asarray(got[name], dtype=np.float64)
                r = np.asarray(reference[name], dtype=np.float64)
                if p.shape != r.shape:
                    results[name][2] += 1
                    continue
                acc = results[name]
                acc[0] = max(acc[0], float(np.abs(p - r).max()))
                # float32 values widen exactly: 2**29 float64 ULPs make one float32 ULP
                scale = 1 << 29 if dtype == "float32" else 1
                acc[1] = max(acc[1], int(ulp_distance(p, r).max()) // scale)
                acc[2] += int(not tol.allows(p, r).all())
    heads = tuple(
        HeadResult(name, head_tolerance(net, name, dtype), a, int(u), int(f))
        for name, (a, u, f) in results.items()
    )
    return ConvReport(model_label, label, target, dtype, len(images), heads)
