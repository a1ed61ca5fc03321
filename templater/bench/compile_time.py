"""Compile timing: a program imported and first called in fresh processes, cold and cached."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from templater.bench.timing import seconds_once
from templater.network import Network

_FRESH = """
import json, resource, sys, time
import numpy as np, numba  # not timed: every numba program pays these
from templater.programs import import_program
start = time.perf_counter()
module = import_program(sys.argv[1])
module.score(np.zeros(module.N_INPUTS))
seconds = time.perf_counter() - start
# the batch and scan functions compile on first use: timed apart
start = time.perf_counter()
module.score_batch(np.zeros((8, module.N_INPUTS)))
batch = time.perf_counter() - start
scan = None
if hasattr(module, "find_faces"):
    start = time.perf_counter()
    module.find_faces(np.zeros((2 * module.WINDOW, 2 * module.WINDOW)))
    scan = time.perf_counter() - start
# VmHWM is this process's own peak: ru_maxrss can carry the forking parent's over exec
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
try:
    with open("/proc/self/status") as status:
        peak = next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024
except (OSError, StopIteration):
    pass
print(json.dumps({"seconds": seconds, "batch_seconds": batch, "scan_seconds": scan,
                  "peak_mb": peak}))
"""


def fresh_import(path: Path, cache_dir: Path) -> dict[str, float | None]:
    """In a new process using numba cache `cache_dir`: import the program and call score once,
    then score_batch and find_faces (if there is one) once each, each timed."""
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    done = subprocess.run(
        [sys.executable, "-c", _FRESH, str(path)], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"compiling {path} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def compile_figures(
    net: Network, layout: str, folder: Path, repeats: int, dtype: str = "float64"
) -> dict[str, Any]:
    """Code generation time, source size, cold and cached first calls, peak memory."""
    from templater.compiler import compile as compile_network
    from templater.fileio import write_atomic

    def generate_source() -> str:
        return compile_network(net, "numba", layout, dtype=dtype)

    start = time.perf_counter()
    source = generate_source()
    generate = time.perf_counter() - start
    if repeats > 1:
        generate = statistics.median([generate, *(seconds_once(generate_source) for _ in range(2))])
    stem = net.architecture.replace("-", "_") + ("" if dtype == "float64" else f"_{dtype}")
    path = folder / f"program_{stem}.py"
    write_atomic(path, source)
    cache = folder / f"cache_{stem}"
    cold = fresh_import(path, cache)
    cached = fresh_import(path, cache)
    return {
        "path": str(path),
        "generate_s": generate,
        "source_kb": len(source.encode()) / 1024,
        "cold_s": cold["seconds"],
        "cached_s": cached["seconds"],
        "cold_batch_s": cold["batch_seconds"],
        "cached_batch_s": cached["batch_seconds"],
        "cold_scan_s": cold["scan_seconds"],
        "cached_scan_s": cached["scan_seconds"],
        "peak_mb": cold["peak_mb"],
    }
