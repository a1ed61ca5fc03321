"""Benchmarks of convolutional programs: MTCNN's nets and the whole detector against onnxruntime
(one thread, float32, the same inputs) measured in the same run.

Rows: PNet over a 640x480 image, RNet and ONet on one crop and on a batch of 64, each program in
float32 and float64; the compiled detector's find_faces against the same cascade running the
nets through onnxruntime, and the time of each of its steps (pyramid, PNet, NMS, crops, RNet,
ONet) in both. Each row has the program's GMAC/s and its share of one core's measured
float64 FMA peak (float32 doubles the lanes: its peak is twice that)."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from templater.bench.records import Results, Row
from templater.bench.timing import machine_info, time_call
from templater.convnet import Conv2D, ConvNetwork
from templater.errors import UsageError
from templater.network import Dense

INPUTS = {"pnet": (480, 640, 3), "rnet": (24, 24, 3), "onet": (48, 48, 3)}
BATCH = 64


def multiply_adds(net: ConvNetwork, rows: int, cols: int) -> int:
    """The multiply-adds of one forward pass over a (rows, cols) image (conv and dense)."""
    total = 0
    trunk_out = (1, net.channels, rows, cols)
    for where, layers in (("trunk", net.trunk), *net.heads):
        cur = trunk_out
        for layer in layers:
            nxt = net._chain(where, (layer,), cur)
            if isinstance(layer, Conv2D):
                total += int(np.prod(nxt[1:])) * layer.weights[0].size
            elif isinstance(layer, Dense):
                total += layer.weights.size
            cur = nxt
        if where == "trunk":
            trunk_out = cur
    return total


def _programs(folder: Path, dtype: str) -> dict[str, Any]:
    from templater.conv_compiler import compile_conv
    from templater.mtcnn_program import load_nets
    from templater.programs import import_program

    out = {}
    for name, net in load_nets().items():
        path = folder / f"{name}_{dtype}.py"
        path.write_text(compile_conv(net, "numba", dtype=dtype), encoding="utf-8")
        out[name] = import_program(path)
    return out


def run_conv(repeats: int = 5, progress: Callable[[str], None] = lambda _: None) -> Results:
    import onnxruntime as ort

    from templater.mtcnn_files import onnx_path
    from templater.mtcnn_program import load_nets

    load_before = os.getloadavg()
    machine = machine_info(repeats)
    peak = machine["fma_peak_gmacs"]
    nets = load_nets()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    sessions = {n: ort.InferenceSession(str(onnx_path(n)), options) for n in nets}
    rng = np.random.default_rng(0)
    results = Results({"repeats": repeats, "batch": BATCH}, machine)
    with tempfile.TemporaryDirectory() as folder:
        for dtype in ("float32", "float64"):
            progress(f"compiling MTCNN's nets ({dtype})")
            programs = _programs(Path(folder), dtype)
            for name, shape in INPUTS.items():
                session = sessions[name]
                feed = session.get_inputs()[0].name
                x = rng.uniform(-1, 1, shape).astype(np.float32)
                batch = rng.uniform(-1, 1, (BATCH, *shape)).astype(np.float32)
                cases = [("one image" if name == "pnet" else "one crop", x[None], x, 1)]
                if name != "pnet":
                    cases.append((f"batch of {BATCH}", batch, batch, BATCH))
                macs = multiply_adds(nets[name], shape[0], shape[1])
                progress(f"{name} cold compile ({dtype})")
                cpu = time.process_time()
                programs[name].forward(x)  # the first call compiles (a fresh folder: no cache)
                results.rows.append(Row(
                    f"MTCNN {name}", f"{name} ({dtype})", "cold compile (the first call)",
                    time.process_time() - cpu, "s",
                    note="CPU seconds of this process (load on the other core does not count)",
                ))
                for what, onnx_in, prog_in, n in cases:
                    progress(f"{name} {what} ({dtype})")
                    base = time_call(lambda s=session, f=feed, v=onnx_in: s.run(None, {f: v}),
                                     repeats)
                    call = (programs[name].forward if n == 1 else programs[name].forward_batch)
                    seconds = time_call(lambda c=call, v=prog_in: c(v), repeats)
                    rate = macs * n / seconds / 1e9
                    share = rate / (peak * (2 if dtype == "float32" else 1))
                    results.rows.append(Row(
                        f"MTCNN {name}", f"{name} ({dtype})", what, seconds * 1e3, "ms",
                        "onnxruntime float32, 1 thread", base * 1e3, base / seconds,
                        f"{rate:.1f} GMAC/s, {100 * share:.0f}% of one core's {dtype} FMA peak",
                    ))
        results.rows += _detector_rows(repeats, progress)
    results.config["load_average"] = {"before": load_before, "after": os.getloadavg()}
    return results


STAGES = ("pyramid", "pnet", "nms", "crops", "rnet", "onet")
# The cascade's name of each step (a method of the nets, else its own numpy function) -> STAGES.
STAGE_OF = {"pyramid_level": "pyramid", "pnet": "pnet", "nms": "nms", "resize_crops": "crops",
            "rnet": "rnet", "onet": "onet"}
# Steps taken like the above but timed as the rest ("other": the box arithmetic).
UNTIMED = ("pnet_boxes",)


class _StageClock:
    """The cascade's nets with a stopwatch on each step: the nets' own pyramid, crops and NMS
    where they have them (the compiled program's numba kernels), else the cascade's numpy ones
    (as for onnxruntime's nets), so both runs take the same steps."""

    def __init__(self, nets: Any) -> None:
        from templater import mtcnn_cascade

        self.seconds = dict.fromkeys(STAGES, 0.0)
        self._steps = {
            name: getattr(nets, name, None) or getattr(mtcnn_cascade, name)
            for name in (*STAGE_OF, *UNTIMED)
        }

    def __getattr__(self, name: str) -> Callable[..., Any]:
        if name in UNTIMED:
            return self._steps[name]
        if name not in STAGE_OF:
            raise AttributeError(name)
        step, stage = self._steps[name], STAGE_OF[name]

        def timed(*args: Any) -> Any:
            start = time.perf_counter()
            result = step(*args)
            self.seconds[stage] += time.perf_counter() - start
            return result

        return timed


def stage_seconds(image: np.ndarray, nets: Any, min_face: int, repeats: int) -> dict[str, float]:
    """Seconds per step of one find_faces (the median over `repeats` runs, each step apart)."""
    from templater import mtcnn_cascade

    runs = []
    for _ in range(repeats):
        clock = _StageClock(nets)
        start = time.perf_counter()
        mtcnn_cascade.find_faces(image, clock, min_face=min_face)
        total = time.perf_counter() - start
        runs.append({**clock.seconds, "other": total - sum(clock.seconds.values())})
    return {k: float(np.median([run[k] for run in runs])) for k in runs[0]}


def _detector_rows(repeats: int, progress: Callable[[str], None]) -> list[Row]:
    """find_faces of the committed detector against the same cascade over onnxruntime's nets,
    then where each one's time goes."""
    import shutil

    from skimage import data

    from templater import mtcnn
    from templater.golden import default_root
    from templater.programs import import_program

    image = data.astronaut()
    megapixels = image.shape[0] * image.shape[1] / 1e6
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "mtcnn_numba.py"
        shutil.copy(default_root() / "mtcnn" / "mtcnn_numba.py", target)
        program = import_program(target)
        progress("the compiled detector on the astronaut (compiles on the first call)")
        seconds = time_call(lambda: program.find_faces(image, min_face=24), repeats)
        nets = mtcnn.OnnxRuntimeNets(threads=1)
        base = time_call(lambda: mtcnn.detect(image, nets, min_face=24), repeats)
        progress("where the time goes")
        ours = stage_seconds(image, program.NETS, 24, max(repeats, 5))
        theirs = stage_seconds(image, nets, 24, max(repeats, 5))
        progress("the evaluation set's photos, step by step")
        photo_rows = _evaluation_set_rows(program.NETS, nets)
    rows = [Row(
        "MTCNN detector", "find_faces (float32)", "astronaut 512x512, smallest face 24 px",
        seconds * 1e3, "ms", "the same cascade, nets through onnxruntime", base * 1e3,
        base / seconds, f"{seconds / megapixels:.3f} s/MP against {base / megapixels:.3f} s/MP",
    )]
    for stage in (*STAGES, "other"):
        rows.append(Row(
            "MTCNN detector", f"step: {stage}", "astronaut, one find_faces (median)",
            ours[stage] * 1e3, "ms", "the same step with onnxruntime's nets and numpy",
            theirs[stage] * 1e3, theirs[stage] / max(ours[stage], 1e-9),
            f"{100 * ours[stage] / sum(ours.values()):.0f}% of the program's time, "
            f"{100 * theirs[stage] / sum(theirs.values()):.0f}% of the baseline's",
        ))
    return rows + photo_rows


def _evaluation_set_rows(program_nets: Any, ort_nets: Any) -> list[Row]:
    """Every photo of the evaluation set that is installed (both sets, smallest face 24): total
    seconds per megapixel, then per step, program against onnxruntime's nets with numpy. One
    pass each, photo by photo alternating, so that load changes hit both alike."""
    from templater.data.eval import fetch

    images = []
    for photo in fetch.photos():
        try:
            images.append(np.array(fetch.load_rgb(photo)))  # writeable, as find_faces makes it
        except UsageError:  # its package is not installed (or the file changed): not measured
            continue
    if not images:
        return []
    megapixels = sum(im.shape[0] * im.shape[1] for im in images) / 1e6
    ours = dict.fromkeys((*STAGES, "other"), 0.0)
    theirs = dict(ours)
    for image in images[:2]:  # warm up (numba compiles the image steps for each array type)
        stage_seconds(image, program_nets, 24, 1)
        stage_seconds(image, ort_nets, 24, 1)
    for image in images:
        for total, nets in ((ours, program_nets), (theirs, ort_nets)):
            for stage, seconds in stage_seconds(image, nets, 24, 1).items():
                total[stage] += seconds
    what = f"{len(images)} photos, {megapixels:.1f} MP, smallest face 24 px"
    mine, base = sum(ours.values()), sum(theirs.values())
    rows = [Row(
        "MTCNN detector", "evaluation set", what, mine / megapixels, "s/MP",
        "the same cascade, nets through onnxruntime", base / megapixels, base / mine,
        f"{mine:.2f} s against {base:.2f} s in all",
    )]
    for stage in (*STAGES, "other"):
        rows.append(Row(
            "MTCNN detector", f"set step: {stage}", what, ours[stage], "s",
            "the same step with onnxruntime's nets and numpy", theirs[stage],
            theirs[stage] / max(ours[stage], 1e-9),
            f"{100 * ours[stage] / mine:.0f}% of the program's time, "
            f"{100 * theirs[stage] / base:.0f}% of the baseline's",
        ))
    return rows


def table(results: Results) -> str:
    lines = [
        f"{'network':<16}{'section':<22}{'what':<42}{'program':>13}{'baseline':>13}{'ratio':>8}"
    ]
    for r in results.rows:
        lines.append(
            f"{r.network:<16}{r.section:<22}{r.what:<42}{r.value:>9.3f}{r.unit:<4}"
            + (
                f"{r.baseline_value:>9.3f}{r.unit:<4}{r.speedup:>7.2f}x  {r.note}"
                if r.baseline_value is not None
                else f"{'-':>13}{'':>8}  {r.note}"
            )
        )
    load = results.config["load_average"]
    lines.append(
        f"load average (1, 5, 15 min) before {tuple(round(v, 2) for v in load['before'])}, "
        f"after {tuple(round(v, 2) for v in load['after'])} on {os.cpu_count()} cores; ratio > 1: "
        "the program is faster"
    )
    return "\n".join(lines)
