"""The run: every network compiled, timed against its baselines, into Results rows."""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from templater.bench.baselines import (
    cascade_seconds,
    im2col_scan,
    kernel_loop,
    numpy_forward,
    onnx_session,
    plain_numba,
)
from templater.bench.compile_time import compile_figures
from templater.bench.records import (
    SCAN_SCALES,
    SCAN_STRIDE,
    SWEEP_HIDDEN,
    BenchConfig,
    Results,
    Row,
    random_network,
)
from templater.bench.timing import machine_info, median_seconds, time_call
from templater.network import Network


def astronaut() -> np.ndarray:
    from skimage import color, data

    return color.rgb2gray(data.astronaut())


def run(config: BenchConfig, progress: Callable[[str], None] = lambda _: None) -> Results:
    rep = config.repeats
    progress("measuring the FMA peak")
    results = Results(config=asdict(config), machine=machine_info(rep))
    image = astronaut() if config.scan else None
    rng = np.random.default_rng(config.seed)
    with tempfile.TemporaryDirectory(prefix="templater-bench-") as tmp:
        folder = Path(tmp)
        for arch in config.archs:
            net = random_network(arch, config.seed, image)
            for dtype in config.dtypes:
                _bench_network(results, config, net, folder, image, rng, progress, dtype)
        if config.sweep:
            _sweep(results, config, folder, progress)
    return results


def _bench_network(
    results: Results,
    config: BenchConfig,
    net: Network,
    folder: Path,
    image: np.ndarray | None,
    rng: np.random.Generator,
    progress: Callable[[str], None],
    dtype: str = "float64",
) -> None:
    """Every figure of one network in one float type: compile, single call, loop, batch, scan."""
    from templater.programs import import_program

    arch = net.architecture if dtype == "float64" else f"{net.architecture} {dtype}"
    add = _adder(results, arch)
    progress(f"{arch}: compiling")
    c = compile_figures(net, config.layout, folder, config.repeats, dtype)
    _compile_rows(add, c)
    program = import_program(c["path"])
    session = onnx_session(net) if config.onnx else None
    ftype = np.dtype(dtype).type
    progress(f"{arch}: single calls")
    _single_rows(add, net, program, session, rng, config.repeats, ftype)
    progress(f"{arch}: in-loop")
    _loop_rows(add, results, config, net, program, rng, dtype)
    progress(f"{arch}: batch")
    _batch_rows(add, config, net, program, session, rng, dtype)
    if image is not None and net.input_shape == (25, 25):
        progress(f"{arch}: scan")
        scan_rows(add, net, program, image, config.repeats, ftype)


def _compile_rows(add: Callable[..., None], c: dict[str, Any]) -> None:
    add("compile", "code generation", c["generate_s"], "s")
    add("compile", "source size", c["source_kb"], "kB")
    add("compile", "numba cold compile (fresh process)", c["cold_s"], "s")
    add("compile", "cached first call (fresh process)", c["cached_s"], "s")
    for what, key in (("score_batch", "batch_s"), ("find_faces", "scan_s")):
        if c[f"cold_{key}"] is not None:
            cold = c[f"cold_{key}"]
            add("compile", f"then first {what}, cold (compiled on first use)", cold, "s")
            add("compile", f"then first {what}, cached", c[f"cached_{key}"], "s")
    add("compile", "peak memory, cold compile process", c["peak_mb"], "MB")


def _single_rows(
    add: Callable[..., None], net: Network, program: Any, session: Any,
    rng: np.random.Generator, rep: int, ftype: type,
) -> None:
    x = rng.random(net.input_size)
    x32 = x.astype(np.float32)
    np64, np32 = numpy_forward(net, np.float64), numpy_forward(net, np.float32)
    x_in = x.astype(ftype)
    ours = time_call(lambda: program.decide(x_in), rep)
    base = {
        "numpy float64": time_call(lambda: np64(x)[0] > 0.0, rep),
        "numpy float32": time_call(lambda: np32(x32)[0] > 0.0, rep),
    }
    if session is not None:
        feed = {"x": x32[None, :]}
        base["onnxruntime float32"] = time_call(lambda: session.run(None, feed), rep)
    for name, seconds in base.items():
        add("single", "decide(x) from Python", ours * 1e9, "ns", name, seconds * 1e9)


def _loop_rows(
    add: Callable[..., None], results: Results, config: BenchConfig, net: Network,
    program: Any, rng: np.random.Generator, dtype: str,
) -> None:
    rep = config.repeats
    peak = results.machine["fma_peak_gmacs"]
    peak_note = f"peak {peak:.1f} GMAC/s"
    if dtype == "float32":  # twice the lanes per vector; assumed, only float64 is measured
        peak *= 2
        peak_note = f"float32 peak taken as 2 x the measured float64 one: {peak:.1f} GMAC/s"
    macs = net.n_multiply_adds
    ftype = np.dtype(dtype).type
    rows = rng.random((config.loop_rows, net.input_size)).astype(ftype)
    loop = kernel_loop(program._kernel)
    t_ours = time_call(lambda: loop(rows), rep) / len(rows)
    _, plain_loop = plain_numba(net, ftype)
    t_plain = time_call(lambda: plain_loop(rows), rep) / len(rows)
    add("in-loop", "_kernel in an njit loop", t_ours * 1e9, "ns", "plain numba loop", t_plain * 1e9)
    rate, plain_rate = macs / t_ours / 1e9, macs / t_plain / 1e9
    add("in-loop", "multiply-add rate", rate, "GMAC/s", "plain numba loop", plain_rate,
        speedup=rate / plain_rate)
    add("in-loop", "fraction of one core's FMA peak", rate / peak, "", note=peak_note)
    out = np.empty(len(rows), dtype=ftype)
    t_block = time_call(lambda: program._rows_kernel(rows, out), rep) / len(rows)
    block_rate = macs / t_block / 1e9
    add(
        "in-loop", "_rows_kernel multiply-add rate (one thread)", block_rate, "GMAC/s",
        "plain numba loop", plain_rate, speedup=block_rate / plain_rate,
        note=f"{program.BLOCK} rows per pass; {block_rate / peak:.2f} of the FMA peak",
    )


def _batch_rows(
    add: Callable[..., None], config: BenchConfig, net: Network, program: Any, session: Any,
    rng: np.random.Generator, dtype: str,
) -> None:
    rep = config.repeats
    macs = net.n_multiply_adds
    np64, np32 = numpy_forward(net, np.float64), numpy_forward(net, np.float32)
    batch = rng.random((config.batch_size, net.input_size))
    batch32 = batch.astype(np.float32)
    batch_in = batch32 if dtype == "float32" else batch
    ours = time_call(lambda: program.score_batch(batch_in), rep)
    base = {
        "numpy float64": time_call(lambda: np64(batch), rep),
        "numpy float32": time_call(lambda: np32(batch32), rep),
    }
    if session is not None:
        base["onnxruntime float32"] = time_call(lambda: session.run(None, {"x": batch32}), rep)
    n = len(batch)
    for name, seconds in base.items():
        add(
            "batch", "score_batch samples/s", n / ours, "1/s", name, n / seconds,
            speedup=seconds / ours,
            note=f"{program.THREADS} threads; {macs * n / ours / 1e9:.1f} GMAC/s",
        )


def _adder(results: Results, network: str) -> Callable[..., None]:
    def add(
        section: str,
        what: str,
        value: float,
        unit: str,
        baseline: str = "",
        baseline_value: float | None = None,
        speedup: float | None = None,
        note: str = "",
    ) -> None:
        if speedup is None and baseline_value is not None:
            speedup = baseline_value / value  # times: lower is better
        results.rows.append(
            Row(network, section, what, value, unit, baseline, baseline_value, speedup, note)
        )

    return add


def scan_rows(
    add: Callable[..., None],
    net: Network,
    program: Any,
    image: np.ndarray,
    rep: int,
    dtype: type = np.float64,
) -> None:
    from templater import scan

    if not hasattr(program, "find_faces"):
        add("scan", "find_faces", math.nan, "ms", note="not available in this program")
        return
    kwargs = {"scales": SCAN_SCALES, "stride": SCAN_STRIDE}
    reps = max(3, rep // 3)
    ours = median_seconds(lambda: program.find_faces(image, **kwargs), 1, reps)
    im2col = median_seconds(lambda: im2col_scan(net, image, SCAN_SCALES, SCAN_STRIDE), 1, reps)
    fft = median_seconds(lambda: scan.scan(net, image, exact=False, **kwargs), 1, reps)
    boxes = program.find_faces(image, **kwargs)
    reference = scan.scan(net, image, exact=True, dtype=dtype, **kwargs)
    same = boxes.shape == reference.shape and bool(np.array_equal(boxes, reference))
    windows = sum(
        len(scan.windows(scan.pyramid_level(image, s), SCAN_STRIDE)[0]) for s in SCAN_SCALES
    )
    note = f"{windows} windows, {len(boxes)} boxes, same boxes as the reference: {same}"
    add(
        "scan",
        "find_faces on the astronaut",
        ours * 1e3,
        "ms",
        "numpy im2col + matmul",
        im2col * 1e3,
        note=note,
    )
    add(
        "scan",
        "find_faces on the astronaut",
        ours * 1e3,
        "ms",
        "numpy FFT correlation",
        fft * 1e3,
        note="scan.scan(exact=False): the first layer by FFT, statistics by summed-area tables",
    )
    try:
        cascade_s = cascade_seconds(image, reps)
    except ImportError:
        return
    add(
        "scan",
        "find_faces on the astronaut",
        ours * 1e3,
        "ms",
        "skimage LBP Cascade",
        cascade_s * 1e3,
        note="min_size 25, max_size 50, scale_factor 1.25, step_ratio 1",
    )


def _sweep(
    results: Results, config: BenchConfig, folder: Path, progress: Callable[[str], None]
) -> None:
    """Compile time against size: 625-h-1 detectors without the scanner, `auto` layout."""
    for hidden in SWEEP_HIDDEN:
        arch = f"625-{hidden}-1"
        progress(f"sweep {arch}")
        net = random_network(arch, config.seed)
        net = net.with_layers(net.layers, input_shape=None)  # the detector alone
        c = compile_figures(net, config.layout, folder, 1)
        add = _adder(results, arch)
        note = f"{net.n_parameters} parameters"
        add("size sweep", "code generation", c["generate_s"], "s", note=note)
        add("size sweep", "numba cold compile (fresh process)", c["cold_s"], "s", note=note)
        add("size sweep", "then first score_batch, cold", c["cold_batch_s"], "s", note=note)
        add("size sweep", "peak memory, cold compile process", c["peak_mb"], "MB", note=note)
        add("size sweep", "source size", c["source_kb"], "kB", note=note)
