"""Timing: medians over repeats, and the machine's float64 FMA peak that rates are judged by."""

from __future__ import annotations

import ctypes
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def median_seconds(fn: Callable[[], Any], number: int, repeats: int) -> float:
    """Median over `repeats` of the mean time of `number` calls."""
    fn()  # warm up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def _calls_for(seconds_per_call: float, budget: float = 0.05) -> int:
    return max(1, min(100_000, int(budget / max(seconds_per_call, 1e-9))))


def seconds_once(fn: Callable[[], Any]) -> float:
    """One call of `fn`, timed."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_call(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    number = _calls_for(min(seconds_once(fn) for _ in range(3)))
    return median_seconds(fn, number, repeats)


# -- the machine's peak -----------------------------------------------------------------------


def fma_peak(repeats: int = 9) -> dict[str, Any]:
    """One core's float64 multiply-add peak, measured: a JIT-compiled loop of independent
    8-lane FMA chains (llvmlite, host CPU features). Best of `repeats`, since it is a ceiling."""
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    lanes, chains = 8, 8
    vec = f"<{lanes} x double>"
    phis = "\n".join(f"  %a{c} = phi {vec} [ %m, %entry ], [ %n{c}, %loop ]" for c in range(chains))
    fmas = "\n".join(
        f"  %n{c} = call {vec} @llvm.fma.v{lanes}f64({vec} %a{c}, {vec} %m, {vec} %k)"
        for c in range(chains)
    )
    sums = "\n".join(f"  %r{c} = fadd {vec} %r{c - 1}, %n{c}" for c in range(1, chains))
    ir = f"""
declare {vec} @llvm.fma.v{lanes}f64({vec}, {vec}, {vec})
define void @kern(i64 %n, double* %out) {{
entry:
  %m0 = insertelement {vec} undef, double 0.999999, i32 0
  %m = shufflevector {vec} %m0, {vec} undef, <{lanes} x i32> zeroinitializer
  %k0 = insertelement {vec} undef, double 0.000001, i32 0
  %k = shufflevector {vec} %k0, {vec} undef, <{lanes} x i32> zeroinitializer
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]
{phis}
{fmas}
  %i1 = add i64 %i, 1
  %c = icmp ult i64 %i1, %n
  br i1 %c, label %loop, label %done
done:
  %r0 = fadd {vec} %n0, zeroinitializer
{sums}
  %s = extractelement {vec} %r{chains - 1}, i32 0
  store double %s, double* %out
  ret void
}}"""
    machine = llvm.Target.from_default_triple().create_target_machine(
        cpu=llvm.get_host_cpu_name(), features=llvm.get_host_cpu_features().flatten(), opt=2
    )
    module = llvm.parse_assembly(ir)
    module.verify()
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    kernel = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.POINTER(ctypes.c_double))(
        engine.get_function_address("kern")
    )
    out = ctypes.c_double()
    iterations = 2_000_000
    best = min(seconds_once(lambda: kernel(iterations, ctypes.byref(out))) for _ in range(repeats))
    return {
        "fma_peak_gmacs": iterations * lanes * chains / best / 1e9,
        "peak_method": (
            f"measured: {chains} independent {lanes}-lane float64 FMA chains in a JIT-compiled "
            f"loop (llvmlite, cpu {llvm.get_host_cpu_name()}), best of {repeats}; one core"
        ),
        "engine": engine,  # keeps the code alive until the caller drops it
    }


def machine_info(repeats: int) -> dict[str, Any]:
    import numba

    peak = fma_peak(repeats)
    peak.pop("engine")
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "cpus": os.cpu_count(),
        "processor": _cpu_name(),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE", ""),
        **peak,
    }


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()
