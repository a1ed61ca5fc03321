"""Benchmarking: compile cost, call rates and scan speed of generated programs against peers.

Every figure is a median over repeats, next to a baseline measured in the same run; a ratio above
1 means the generated program is that many times faster. Compile figures come from fresh Python
processes (cold: empty numba cache; cached: the cache the cold run left), timed from just before
the program is imported to just after its first call; numpy and numba imports are not counted.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

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


# -- networks ---------------------------------------------------------------------------------


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


def numpy_forward(net: Network, dtype: type) -> Callable[[np.ndarray], np.ndarray]:
    """The plain numpy forward pass (BLAS matmuls) in `dtype`: the baseline."""
    params = [(d.weights.astype(dtype), d.bias.astype(dtype)) for d in net.layers]

    def forward(x: np.ndarray) -> np.ndarray:
        h = x
        for k, (w, b) in enumerate(params):
            h = h @ w + b
            if k < len(params) - 1:
                h = np.maximum(h, 0)
        return h

    return forward


# -- timing -----------------------------------------------------------------------------------


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


def _probe(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_call(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    number = _calls_for(min(_probe(fn) for _ in range(3)))
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
    best = min(_probe(lambda: kernel(iterations, ctypes.byref(out))) for _ in range(repeats))
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


# -- compiling in fresh processes -------------------------------------------------------------

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
        generate = statistics.median([generate, *(_probe(generate_source) for _ in range(2))])
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


# -- baselines: numba loop over weight arrays, onnxruntime -----------------------------------


def plain_numba(
    net: Network, dtype: type = np.float64
) -> tuple[Callable[[np.ndarray], float], Callable[..., float]]:
    """A plain numba forward pass over weight arrays (neuron-major dot products, no literals)
    in `dtype`, and a loop calling it over rows (of that dtype)."""
    from numba import njit
    from numba.typed import List

    weights, biases = List(), List()
    for d in net.layers:
        weights.append(np.ascontiguousarray(d.weights, dtype=dtype))
        biases.append(np.ascontiguousarray(d.bias, dtype=dtype))

    @njit(cache=False)
    def forward(x, weights, biases):
        h = x
        for k in range(len(weights)):
            w, b = weights[k], biases[k]
            out = np.empty(w.shape[1], dtype=w.dtype)
            for j in range(w.shape[1]):
                acc = b[j]
                for i in range(w.shape[0]):
                    acc += h[i] * w[i, j]
                out[j] = acc if (k == len(weights) - 1 or acc > 0.0) else 0.0
            h = out
        return h[0]

    @njit(cache=False)
    def loop(rows, weights, biases):
        total = 0.0
        for r in range(rows.shape[0]):
            total += forward(rows[r], weights, biases)
        return total

    return (lambda x: forward(x, weights, biases)), (lambda rows: loop(rows, weights, biases))


def kernel_loop(kernel: Any) -> Callable[[np.ndarray], float]:
    """An njit loop calling the program's `_kernel` on each row, as a scanner calls it."""
    from numba import njit

    @njit(cache=False)
    def loop(rows):
        total = 0.0
        for r in range(rows.shape[0]):
            total += kernel(rows[r])
        return total

    return loop


def onnx_session(net: Network) -> Any:
    """An onnxruntime session for the same network, exported as a float32 ONNX graph."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, h = [], [], "x"
    for k, d in enumerate(net.layers):
        inits.append(numpy_helper.from_array(d.weights.astype(np.float32), f"W{k}"))
        inits.append(numpy_helper.from_array(d.bias.astype(np.float32), f"B{k}"))
        nodes.append(helper.make_node("MatMul", [h, f"W{k}"], [f"m{k}"]))
        nodes.append(helper.make_node("Add", [f"m{k}", f"B{k}"], [f"a{k}"]))
        h = f"a{k}"
        if k < len(net.layers) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"r{k}"]))
            h = f"r{k}"
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, net.input_size])],
        [helper.make_tensor_value_info(h, TensorProto.FLOAT, [None, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


# -- the run ----------------------------------------------------------------------------------


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
    from templater.programs import import_program

    rep = config.repeats
    peak = results.machine["fma_peak_gmacs"]
    peak_note = f"peak {peak:.1f} GMAC/s"
    if dtype == "float32":  # twice the lanes per vector; assumed, only float64 is measured
        peak *= 2
        peak_note = f"float32 peak taken as 2 x the measured float64 one: {peak:.1f} GMAC/s"
    arch = net.architecture if dtype == "float64" else f"{net.architecture} {dtype}"
    add = _adder(results, arch)
    macs = net.n_multiply_adds
    ftype = np.dtype(dtype).type
    progress(f"{arch}: compiling")
    c = compile_figures(net, config.layout, folder, rep, dtype)
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
    program = import_program(c["path"])
    x = rng.random(net.input_size)
    x32 = x.astype(np.float32)
    np64, np32 = numpy_forward(net, np.float64), numpy_forward(net, np.float32)
    session = onnx_session(net) if config.onnx else None

    progress(f"{arch}: single calls")
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

    progress(f"{arch}: in-loop")
    rows = rng.random((config.loop_rows, net.input_size)).astype(ftype)
    loop = kernel_loop(program._kernel)
    t_ours = time_call(lambda: loop(rows), rep) / len(rows)
    _, plain_loop = plain_numba(net, ftype)
    t_plain = time_call(lambda: plain_loop(rows), rep) / len(rows)
    add("in-loop", "_kernel in an njit loop", t_ours * 1e9, "ns", "plain numba loop", t_plain * 1e9)
    rate = macs / t_ours / 1e9
    add(
        "in-loop",
        "multiply-add rate",
        rate,
        "GMAC/s",
        "plain numba loop",
        macs / t_plain / 1e9,
        speedup=rate / (macs / t_plain / 1e9),
    )
    add(
        "in-loop",
        "fraction of one core's FMA peak",
        rate / peak,
        "",
        note=peak_note,
    )
    out = np.empty(len(rows), dtype=ftype)
    t_block = time_call(lambda: program._rows_kernel(rows, out), rep) / len(rows)
    block_rate = macs / t_block / 1e9
    add(
        "in-loop",
        "_rows_kernel multiply-add rate (one thread)",
        block_rate,
        "GMAC/s",
        "plain numba loop",
        macs / t_plain / 1e9,
        speedup=block_rate / (macs / t_plain / 1e9),
        note=f"{program.BLOCK} rows per pass; {block_rate / peak:.2f} of the FMA peak",
    )

    progress(f"{arch}: batch")
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
            "batch",
            "score_batch samples/s",
            n / ours,
            "1/s",
            name,
            n / seconds,
            speedup=seconds / ours,
            note=f"{program.THREADS} threads; {macs * n / ours / 1e9:.1f} GMAC/s",
        )

    if image is not None and net.input_shape == (25, 25):
        progress(f"{arch}: scan")
        _scan_rows(add, net, program, image, rep, ftype)


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


def _scan_rows(
    add: Callable[..., None],
    net: Network,
    program: Any,
    image: np.ndarray,
    rep: int,
    dtype: type = np.float64,
) -> None:
    from templater import scan
    from templater.demo import im2col_scan

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
        cascade_s = _cascade_seconds(image, reps)
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


def _cascade_seconds(image: np.ndarray, repeats: int) -> float:
    from skimage import data
    from skimage.feature import Cascade

    detector = Cascade(data.lbp_frontal_face_cascade_filename())
    return median_seconds(
        lambda: detector.detect_multi_scale(
            image, scale_factor=1.25, step_ratio=1, min_size=(25, 25), max_size=(50, 50)
        ),
        1,
        repeats,
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


# -- output -----------------------------------------------------------------------------------


def table(results: Results) -> str:
    """The results as a Markdown table (one row per figure)."""
    m = results.machine
    lines = [
        f"machine: {m['processor']}, {m['cpus']} cpus; python {m['python']}, numpy "
        f"{m['numpy']}, numba {m['numba']}; OPENBLAS_CORETYPE={m['openblas_coretype'] or '-'}",
        f"FMA peak: {m['fma_peak_gmacs']:.1f} GMAC/s float64 ({m['peak_method']})",
        "",
        "| network | section | figure | value | baseline | baseline value | speedup | note |",
        "|---|---|---|---:|---|---:|---:|---|",
    ]
    for r in results.rows:
        base = "" if r.baseline_value is None else _fmt(r.baseline_value)
        speedup = "" if r.speedup is None else f"{r.speedup:.2f}x"
        lines.append(
            f"| {r.network} | {r.section} | {r.what} | {_fmt(r.value)} {r.unit} | {r.baseline} "
            f"| {base} | {speedup} | {r.note} |"
        )
    return "\n".join(lines)


class Target(NamedTuple):
    """One of issue 5's targets: which rows it reads and how it judges them."""

    what: str
    networks: tuple[str, ...]
    section: str
    figure: str
    baseline: str
    met: Callable[[Row], bool]
    shows: str = "speedup"  # the column shown as measured: "speedup", "value" or "note"


def _at_least(ratio: float) -> Callable[[Row], bool]:
    return lambda r: (r.speedup or 0.0) >= ratio


DETECTORS = ("625-32-1", "625-128-1")
SCAN = "find_faces on the astronaut"
TARGETS = (
    Target(
        "cold compile <= 3 s",
        ("625-32-1",),
        "compile",
        "numba cold compile (fresh process)",
        "",
        lambda r: r.value <= 3.0,
        "value",
    ),
    Target(
        "cached first call <= 0.6 s",
        ("625-32-1",),
        "compile",
        "cached first call (fresh process)",
        "",
        lambda r: r.value <= 0.6,
        "value",
    ),
    Target(
        "in-loop >= 10 GMAC/s",
        DETECTORS,
        "in-loop",
        "multiply-add rate",
        "plain numba loop",
        lambda r: r.value >= 10.0,
        "value",
    ),
    Target(
        "single call >= 5x onnxruntime",
        ("625-32-1",),
        "single",
        "decide(x) from Python",
        "onnxruntime float32",
        _at_least(5.0),
    ),
    Target(
        "single call >= 2x numpy float64",
        ("625-32-1",),
        "single",
        "decide(x) from Python",
        "numpy float64",
        _at_least(2.0),
    ),
    Target(
        "batch >= numpy float64",
        DETECTORS,
        "batch",
        "score_batch samples/s",
        "numpy float64",
        _at_least(1.0),
    ),
    Target(
        "scan >= 5x numpy im2col + matmul",
        DETECTORS,
        "scan",
        SCAN,
        "numpy im2col + matmul",
        _at_least(5.0),
    ),
    Target(
        "scan faster than the LBP cascade",
        DETECTORS,
        "scan",
        SCAN,
        "skimage LBP Cascade",
        lambda r: (r.speedup or 0.0) > 1.0,
    ),
    Target(
        "scan: same boxes as the reference",
        DETECTORS,
        "scan",
        SCAN,
        "numpy im2col + matmul",
        lambda r: r.note.endswith("same boxes as the reference: True"),
        "note",
    ),
    Target(
        "1M parameters compile <= 30 s",
        ("625-1600-1",),
        "size sweep",
        "numba cold compile (fresh process)",
        "",
        lambda r: r.value <= 30.0,
        "value",
    ),
    Target(
        "1M parameters: peak memory < 2 GB",
        ("625-1600-1",),
        "size sweep",
        "peak memory, cold compile process",
        "",
        lambda r: r.value < 2048.0,
        "value",
    ),
)


def targets(results: Results) -> str:
    """Issue 5's targets judged on this run's rows (float32 programs too, when measured)."""
    lines = ["| target | network | measured | met |", "|---|---|---:|---|"]
    for t in TARGETS:
        for network in t.networks:
            for row in results.rows:
                name = row.network.removesuffix(" float32")
                if (name, row.section, row.what, row.baseline) != (
                    network,
                    t.section,
                    t.figure,
                    t.baseline,
                ):
                    continue
                shown = {
                    "speedup": f"{row.speedup or 0.0:.2f}x",
                    "value": f"{_fmt(row.value)} {row.unit}",
                    "note": row.note.rsplit(": ", 1)[-1],
                }[t.shows]
                verdict = "yes" if t.met(row) else "**no**"
                lines.append(f"| {t.what} | {row.network} | {shown} | {verdict} |")
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if not math.isfinite(value):
        return "n/a"
    if value == 0 or 0.01 <= abs(value) < 1e6:
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:.3e}"
