"""Two compiled MTCNN programs side by side in one process: the same numbers, and which is faster.

    git show HEAD~1:generated/mtcnn/mtcnn_numba.py > /tmp/old_mtcnn.py
    python docs/ab_mtcnn.py /tmp/old_mtcnn.py generated/mtcnn/mtcnn_numba.py

Checks that both give identical outputs (bit for bit) for each net and image step, then times
them interleaved (A, B, A, B, ...) so that load on a shared machine hits both alike, and prints
medians: PNet on a 240x320 level, RNet on 64 crops, ONet on 64 crops, the pyramid of a
1024x1024 photo, 300 crops to 24x24 and 48x48. Both programs compile on their first call.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time

import numpy as np


def load(path: str, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def same(a, b) -> bool:
    a = a if isinstance(a, tuple) else (a,)
    b = b if isinstance(b, tuple) else (b,)
    return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def race(label: str, first, second, repeats: int) -> None:
    if not same(first(), second()):
        raise SystemExit(f"{label}: the programs' outputs differ")
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for call, spent in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            call()
            spent.append(time.perf_counter() - start)
    a, b = (float(np.median(t)) for t in times)
    print(f"{label:28s} A {a * 1e3:8.3f} ms   B {b * 1e3:8.3f} ms   A/B {a / b:5.2f}  (same output)")


def main(old: str, new: str) -> None:
    import skimage.data

    programs = load(old, "program_a"), load(new, "program_b")
    rng = np.random.default_rng(0)
    level = rng.random((3, 320, 240), dtype=np.float32) - 0.5
    crops24 = rng.random((64, 3, 24, 24), dtype=np.float32) - 0.5
    crops48 = rng.random((64, 3, 48, 48), dtype=np.float32) - 0.5
    race("PNet, a 240x320 level", *(lambda p=p: p.NETS.pnet(level) for p in programs), 30)
    race("RNet, 64 crops", *(lambda p=p: p.NETS.rnet(crops24) for p in programs), 30)
    race("ONet, 64 crops", *(lambda p=p: p.NETS.onet(crops48) for p in programs), 15)

    photo = np.ascontiguousarray(np.tile(skimage.data.astronaut(), (2, 2, 1)))
    rows, cols = photo.shape[:2]
    scales = [0.5 * 0.709**k for k in range(9)]

    def pyramid(p):
        return tuple(
            p.NETS.pyramid_level(photo, math.ceil(rows * s), math.ceil(cols * s)) for s in scales
        )

    race("pyramid of 1024x1024", *(lambda p=p: pyramid(p) for p in programs), 15)
    x1, y1 = rng.integers(-20, cols - 40, 300), rng.integers(-20, rows - 40, 300)
    side = rng.integers(20, 150, 300)
    boxes = np.stack([x1, y1, x1 + side, y1 + side], axis=1).astype(np.int64)
    for size in (24, 48):
        race(
            f"300 crops to {size}x{size}",
            *(lambda p=p: p.NETS.resize_crops(photo, boxes, size) for p in programs),
            15,
        )


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    main(sys.argv[1], sys.argv[2])
