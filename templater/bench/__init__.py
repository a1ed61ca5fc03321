"""Benchmarking: compile cost, call rates and scan speed of generated programs against peers.

Every figure is a median over repeats, next to a baseline measured in the same run; a ratio above
1 means the generated program is that many times faster. Compile figures come from fresh Python
processes (cold: empty numba cache; cached: the cache the cold run left), timed from just before
the program is imported to just after its first call; numpy and numba imports are not counted.
"""

from __future__ import annotations

from templater.bench.baselines import (
    im2col_scan,
    kernel_loop,
    numpy_forward,
    onnx_session,
    plain_numba,
)
from templater.bench.compile_time import compile_figures, fresh_import
from templater.bench.criteria import CRITERIA, Criterion, criteria, table
from templater.bench.records import (
    ARCHS,
    KEEP_FRACTION,
    SCAN_SCALES,
    SCAN_STRIDE,
    SWEEP_HIDDEN,
    BenchConfig,
    Results,
    Row,
    parse_arch,
    random_network,
)
from templater.bench.run import astronaut, run, scan_rows
from templater.bench.timing import fma_peak, machine_info, median_seconds, time_call

__all__ = [
    "ARCHS", "CRITERIA", "KEEP_FRACTION", "SCAN_SCALES", "SCAN_STRIDE", "SWEEP_HIDDEN",
    "BenchConfig", "Criterion", "Results", "Row", "astronaut", "compile_figures", "criteria",
    "fma_peak", "fresh_import", "im2col_scan", "kernel_loop", "machine_info", "median_seconds",
    "numpy_forward", "onnx_session", "parse_arch", "plain_numba", "random_network", "run",
    "scan_rows", "table", "time_call",
]
