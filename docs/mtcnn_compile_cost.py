"""Cold compile cost of one MTCNN net in a fresh process: CPU seconds and peak memory.

    python docs/mtcnn_compile_cost.py pnet|rnet|onet

Compiles the net (float32, numba) into a new folder, imports it and calls forward once (numba
compiles every kernel; no cache exists yet), and prints the CPU time of import + first call and
the process's peak resident memory. Needs the mtcnn extra (`pip install -e '.[mtcnn]'`).
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from templater.conv_compiler import compile_conv
from templater.mtcnn_program import load_nets
from templater.programs import import_program

SHAPES = {"pnet": (480, 640, 3), "rnet": (24, 24, 3), "onet": (48, 48, 3)}


def main(name: str) -> None:
    folder = Path(tempfile.mkdtemp())
    path = folder / f"{name}.py"
    path.write_text(compile_conv(load_nets()[name], "numba", dtype="float32"), encoding="utf-8")
    cpu, wall = time.process_time(), time.perf_counter()
    program = import_program(path)
    program.forward(np.zeros(SHAPES[name], np.float32))
    print(
        f"{name}: cold compile {time.process_time() - cpu:.2f} s CPU "
        f"({time.perf_counter() - wall:.2f} s wall), peak resident memory "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "pnet")
