"""The main job in one call: the committed face model -> Numba program -> faces in a photo.

`run_demo` takes the committed model (generated/face/model.npz; or trains one), uses the
committed Numba program when it was compiled from that model (else compiles one), scans
`skimage.data.astronaut()`, and measures: the boxes against the hand-labelled face
(generated/face/astronaut_face.json), false positives per megapixel on the face-free photos
kept out of training, and the scan time beside a numpy im2col + matmul scan of the same windows
and scikit-image's LBP frontal-face cascade on the same image.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from templater import scan
from templater.bench.baselines import im2col_scan  # the one copy: bench's numpy baseline
from templater.errors import UsageError

# A found box is the labelled face when their IoU is at least this (the PASCAL VOC rule).
MATCH_IOU = 0.5
# Where `demo --retrain` writes the model it trains and its program (never over existing files).
RETRAIN_DIR = "demo-retrained"
# The cascade searches the same face sizes as the default pyramid (25 to 125 pixels).
CASCADE_SETTINGS = {
    "scale_factor": 1.2,
    "step_ratio": 1,
    "min_size": (25, 25),
    "max_size": (125, 125),
}


@dataclass(frozen=True, eq=False)
class DemoResult:
    boxes: np.ndarray
    labelled: tuple[tuple[float, float, float], ...]
    best_iou: float
    false_positives: int
    held_out: dict[str, dict[str, float]]  # photo -> false positives, megapixels
    timings: dict[str, float]  # seconds
    program: str  # the program file used
    program_source: str  # "committed" or "compiled"
    model: str
    picture: str | None
    notes: list[str] = field(default_factory=list)

    @property
    def found(self) -> bool:
        return self.best_iou >= MATCH_IOU

    @property
    def held_out_fp_per_megapixel(self) -> float:
        fps = sum(v["false_positives"] for v in self.held_out.values())
        mps = sum(v["megapixels"] for v in self.held_out.values())
        return fps / mps if mps else 0.0

    def to_json(self) -> str:
        from templater.detect import boxes_as_dicts

        return json.dumps(
            {
                "model": self.model,
                "program": self.program,
                "program_source": self.program_source,
                "picture": self.picture,
                "boxes": boxes_as_dicts(self.boxes),
                "labelled_faces": [list(b) for b in self.labelled],
                "best_iou": self.best_iou,
                "face_found": self.found,
                "false_positives": self.false_positives,
                "held_out": self.held_out,
                "held_out_fp_per_megapixel": self.held_out_fp_per_megapixel,
                "timings_seconds": self.timings,
            },
            indent=2,
        )


def generated_root() -> Path:
    from templater.golden import default_root

    return default_root()


def labelled_faces(root: Path | None = None) -> tuple[tuple[float, float, float], ...]:
    """The hand-labelled faces of the astronaut photo: (row, col, size) squares."""
    path = (root or generated_root()) / "face" / "astronaut_face.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return tuple((float(f["row"]), float(f["col"]), float(f["size"])) for f in data["faces"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{path}: not a readable face label file ({exc})") from None


def match(boxes: np.ndarray, labelled: tuple[tuple[float, float, float], ...]) -> tuple[float, int]:
    """(best IoU of any box with the labelled face, false positives).

    Each labelled face claims at most one box: the best-scoring one with IoU >= MATCH_IOU. Every
    other box is a false positive.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    claimed = np.zeros(len(boxes), dtype=bool)
    best = 0.0
    for face in labelled:
        if not len(boxes):
            break
        overlaps = scan.iou(np.array([*face, 0.0]), boxes)
        best = max(best, float(overlaps.max()))
        hits = np.flatnonzero((overlaps >= MATCH_IOU) & ~claimed)
        if hits.size:
            claimed[hits[0]] = True  # boxes are best first
    return best, int(len(boxes) - claimed.sum())


def cascade_scan(image: np.ndarray) -> np.ndarray:
    """scikit-image's LBP frontal-face cascade on the same image: (n, 3) boxes (row, col, size)."""
    from skimage import data, feature

    detector = feature.Cascade(data.lbp_frontal_face_cascade_filename())
    found = detector.detect_multi_scale(img=image, **CASCADE_SETTINGS)
    return np.array([(d["r"], d["c"], d["width"]) for d in found], dtype=np.float64).reshape(-1, 3)


def _best_of(fn: Callable[[], Any], repeats: int) -> tuple[Any, float, float]:
    """(result, median seconds, min seconds) over `repeats` calls."""
    times, out = [], None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times), min(times)


def run_demo(
    picture: str | os.PathLike | None = "astronaut_faces.png",
    retrain: bool = False,
    repeats: int = 3,
    log: Callable[[str], None] = lambda _: None,
    progress: Callable[[int, int, float, float], None] | None = None,
    retrain_dir: str | os.PathLike = RETRAIN_DIR,
) -> DemoResult:
    """The whole path; writes the picture (and, if it had to compile, the program beside it).

    With `retrain`, the model, its companions and its program go to `retrain_dir` (created if
    missing); files already there are never overwritten: the run is refused before training.
    """
    from templater.compiler import compile as compile_network
    from templater.data.faces import HELD_OUT_PHOTOS, photo
    from templater.detect import draw_boxes, program_detector, to_rgb
    from templater.fileio import write_atomic
    from templater.modelfile import load
    from templater.programs import import_program

    root = generated_root()
    out_dir = Path(picture).parent if picture is not None else Path(".")
    if picture is not None and not out_dir.is_dir():
        raise UsageError(f"cannot write {picture}: folder {out_dir} does not exist")
    labelled = labelled_faces(root)
    timings: dict[str, float] = {}
    notes: list[str] = []

    if retrain:
        from templater.train import TrainConfig, train, write_outputs

        model_path, program_path = retrain_paths(retrain_dir)
        try:
            model_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create {model_path.parent}: {exc.strerror or exc}") from None
        log(f"training the face model (templater train --final: the shipped recipe); the model "
            f"and its program go to {model_path.parent}/")
        start = time.perf_counter()
        result = train(TrainConfig(final=True), progress)
        timings["train"] = time.perf_counter() - start
        write_outputs(result, model_path)
        net = result.network
    else:
        model_path = root / "face" / "model.npz"
        if not model_path.is_file():
            raise UsageError(
                f"no committed face model at {model_path}; run: templater demo --retrain"
            )
        net = load(model_path)

    committed = root / "face" / "face_numba.py"
    start = time.perf_counter()
    if not retrain and committed.is_file() and _digest_of(committed) == net.digest():
        program_path, program_source = committed, "committed"
    else:
        log("compiling the model into a Numba program...")
        source = compile_network(net, "numba")
        timings["compile"] = time.perf_counter() - start
        if not retrain:
            program_path = out_dir / "face_numba.py"
        write_atomic(program_path, source)
        program_source = "compiled"
    start = time.perf_counter()
    module = import_program(program_path)
    timings["import_and_jit"] = time.perf_counter() - start
    find = program_detector(module, str(program_path)).find

    image = np.ascontiguousarray(photo("astronaut"))
    boxes, timings["find_faces"], timings["find_faces_min"] = _best_of(lambda: find(image), repeats)
    reference, timings["numpy_im2col_matmul"], _ = _best_of(
        lambda: im2col_scan(net, image), repeats
    )
    cascade, timings["skimage_lbp_cascade"], _ = _best_of(lambda: cascade_scan(image), repeats)
    if not _same_boxes(boxes, reference):
        notes.append("the numpy BLAS scan's boxes differ slightly (its sums are reassociated)")
    notes.append(f"skimage cascade found {len(cascade)} face(s) on the same image")
    best, fps = match(boxes, labelled)

    held_out = {}
    for name in HELD_OUT_PHOTOS:
        img = np.ascontiguousarray(photo(name))
        found = find(img)
        held_out[name] = {
            "false_positives": len(found),
            "megapixels": img.shape[0] * img.shape[1] / 1e6,
        }

    if picture is not None:
        write_atomic(picture, draw_boxes(to_rgb(image), boxes, labelled))
    return DemoResult(
        boxes=boxes,
        labelled=labelled,
        best_iou=best,
        false_positives=fps,
        held_out=held_out,
        timings=timings,
        program=str(program_path),
        program_source=program_source,
        model=str(model_path),
        picture=None if picture is None else str(picture),
        notes=notes,
    )


def report(result: DemoResult) -> str:
    """What `templater demo` prints."""
    from templater.detect import format_boxes

    t = result.timings
    lines = [
        f"model:   {result.model}",
        f"program: {result.program} ({result.program_source})",
        "faces found on skimage.data.astronaut() (512x512), best first:",
        format_boxes(result.boxes),
        f"labelled face {result.labelled[0]}: best IoU {result.best_iou:.3f} "
        f"({'found' if result.found else 'NOT found'}, needs >= {MATCH_IOU}); "
        f"false positives: {result.false_positives}",
    ]
    for name, v in result.held_out.items():
        lines.append(
            f"held-out face-free photo {name!r}: {v['false_positives']} false positive(s) "
            f"on {v['megapixels']:.3f} MP"
        )
    lines.append(f"held-out false positives per megapixel: {result.held_out_fp_per_megapixel:.2f}")
    lines.append("timings (median of repeats; find_faces on the program's THREADS threads):")
    if "train" in t:
        lines.append(f"  training                         {t['train']:8.3f} s")
    if "compile" in t:
        lines.append(f"  compile to Numba source          {t['compile']:8.3f} s")
    lines += [
        f"  import + JIT (cached after once) {t['import_and_jit']:8.3f} s",
        f"  find_faces (emitted Numba)       {t['find_faces']:8.3f} s",
        f"  numpy im2col + matmul scan       {t['numpy_im2col_matmul']:8.3f} s",
        f"  skimage LBP cascade              {t['skimage_lbp_cascade']:8.3f} s",
    ]
    lines += [f"note: {n}" for n in result.notes]
    if result.picture:
        lines.append(f"wrote {result.picture}")
    return "\n".join(lines)


def retrain_paths(folder: str | os.PathLike) -> tuple[Path, Path]:
    """(model, program) paths of `demo --retrain` in `folder`; refused if any of their files
    (or the model's companions) exists there."""
    from templater.train import output_paths

    folder = Path(folder)
    model = folder / "face_model.npz"
    program = folder / "face_numba.py"
    for path in (*output_paths(model).values(), program):
        if path.exists():
            raise UsageError(
                f"{path} exists: demo --retrain never overwrites; remove it or choose another "
                "folder (--retrain-dir)"
            )
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a folder; give --retrain-dir a folder")
    return model, program


def _digest_of(program: Path) -> str | None:
    """MODEL_DIGEST of a generated program, read from its text (without importing it)."""
    try:
        for line in program.read_text(encoding="utf-8").splitlines()[:40]:
            if line.startswith("MODEL_DIGEST = "):
                return line.split("=", 1)[1].strip().strip("'\"")
    except OSError:
        return None
    return None


def _same_boxes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-9, atol=1e-9))
