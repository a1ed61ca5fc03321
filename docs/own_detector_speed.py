"""Where find_faces spends its time on the astronaut: pyramid levels vs the compiled forward.

    PYTHONPATH=. OPENBLAS_NUM_THREADS=1 NUMBA_NUM_THREADS=1 python docs/own_detector_speed.py [DIR]

DIR: a folder with model.npz and own_numba.py (a `templater train-conv` output); default
generated/own.
"""

import sys
import time
from pathlib import Path

import numpy as np

from templater import own_detector as od
from templater.data.faces import photo
from templater.programs import import_program
from templater.scan import pyramid_level

REPEATS = 3


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else od.GENERATED
    det = od.load(folder / "model.npz")
    program = import_program(folder / "own_numba.py")
    img = photo("astronaut")
    program.forward(np.zeros((1, 30, 30), np.float32))  # compile outside the timing
    pyramid = forward = 0.0
    for _ in range(REPEATS):
        for s in od.scales(img.shape, det.window, 24):
            t0 = time.perf_counter()
            level = pyramid_level(img, s).astype(np.float32)[None]
            t1 = time.perf_counter()
            program.forward(level)
            t2 = time.perf_counter()
            pyramid += t1 - t0
            forward += t2 - t1
    t0 = time.perf_counter()
    det.find_faces(img, 24, program=program)
    total = time.perf_counter() - t0
    print(
        f"astronaut 512x512, min_face 24: pyramid {pyramid / REPEATS:.3f} s, "
        f"forward {forward / REPEATS:.3f} s; find_faces {total:.3f} s"
    )


if __name__ == "__main__":
    main()
