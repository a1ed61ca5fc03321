"""Face detectors by name for the evaluation: OpenCV's Haar cascade, scikit-image's LBP cascade,
MTCNN (through onnxruntime or templater's reference) and templater programs or models.

Every detector takes a uint8 (rows, cols, 3) RGB photo and returns boxes (N, 4) as
x0, y0, x1, y1 pixel edges and scores (N,), best first where the detector scores at all. Each
runs on one thread and looks for faces of at least `min_face` pixels.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import UsageError

Boxes = tuple[np.ndarray, np.ndarray]
BUILTIN = ("haar3", "haar5", "lbp", "mtcnn-ort", "mtcnn-ref", "own")
HAAR_SCALE_FACTOR = 1.1
LBP_SCALE_FACTOR = 1.1
# The dense program's own pyramid spacing (its DEFAULT_SCALES step by 0.8).
DENSE_FACTOR = 0.8


@dataclass(frozen=True)
class FaceDetector:
    name: str
    describe: str
    find: Callable[[np.ndarray], Boxes]


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Within the block, BLAS and numba run on one thread (OpenCV and onnxruntime are limited
    where their detectors are made); the previous limits come back afterwards.
    NUMBA_NUM_THREADS is left alone: changing it once numba's threads run makes numba raise on
    its next configuration reload."""
    with contextlib.ExitStack() as stack:
        try:
            import threadpoolctl

            stack.enter_context(threadpoolctl.threadpool_limits(1))
        except ImportError:  # pragma: no cover - scikit-learn brings it
            pass
        try:
            import numba

            before = numba.get_num_threads()
            numba.set_num_threads(1)
            stack.callback(numba.set_num_threads, before)
        except (ImportError, ValueError):  # pragma: no cover
            pass
        yield


def make(name: str, min_face: int) -> FaceDetector:
    """The detector called `name` (one of BUILTIN) or a program / model at that path."""
    if name in ("haar3", "haar5"):
        return _haar(name, int(name[-1]), min_face)
    if name == "lbp":
        return _lbp(min_face)
    if name in ("mtcnn-ort", "mtcnn-ref"):
        return _mtcnn(name, min_face)
    if name == "own":
        return _own(min_face)
    path = Path(name)
    if path.is_dir() and (path / "model.npz").is_file() and (path / "own_numba.py").is_file():
        return _own(min_face, path)  # a `templater train-conv -o DIR` folder
    if path.is_file():
        return _program(path, min_face)
    raise UsageError(
        f"unknown detector {name!r}: choose {', '.join(BUILTIN)} or a program/model file path"
    )


def _gray_u8(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _xywh_to_edges(rects: Any) -> np.ndarray:
    r = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    return np.column_stack([r[:, 0], r[:, 1], r[:, 0] + r[:, 2], r[:, 1] + r[:, 3]])


def _haar(name: str, neighbours: int, min_face: int) -> FaceDetector:
    try:
        import cv2
    except ImportError:
        raise UsageError("the Haar detectors need OpenCV: pip install 'opencv-python<5'") from None
    if not hasattr(cv2, "CascadeClassifier"):
        raise UsageError(
            "this OpenCV has no CascadeClassifier (5.x); pip install 'opencv-python<5'"
        )
    cv2.setNumThreads(1)
    cascade = cv2.CascadeClassifier(
        os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
    )

    def find(rgb: np.ndarray) -> Boxes:
        rects, counts = cascade.detectMultiScale2(
            _gray_u8(rgb), scaleFactor=HAAR_SCALE_FACTOR, minNeighbors=neighbours,
            minSize=(min_face, min_face),
        )
        scores = np.asarray(counts, dtype=np.float64).reshape(-1)  # neighbours per box
        order = np.argsort(-scores, kind="stable")
        return _xywh_to_edges(rects)[order], scores[order]

    describe = (
        f"OpenCV {cv2.__version__} Haar haarcascade_frontalface_default, scaleFactor "
        f"{HAAR_SCALE_FACTOR}, minNeighbors {neighbours}, minSize {min_face}"
    )
    return FaceDetector(name, describe, find)


def _lbp(min_face: int) -> FaceDetector:
    import skimage
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    cascade = Cascade(lbp_frontal_face_cascade_filename())

    def find(rgb: np.ndarray) -> Boxes:
        gray = _gray_u8(rgb).astype(np.float64) / 255.0
        found = cascade.detect_multi_scale(
            img=gray, scale_factor=LBP_SCALE_FACTOR, step_ratio=1,
            min_size=(min_face, min_face), max_size=gray.shape,
        )
        rects = [(d["c"], d["r"], d["width"], d["height"]) for d in found]
        return _xywh_to_edges(rects), np.ones(len(rects))

    describe = (
        f"scikit-image {skimage.__version__} Cascade (LBP frontal face), scale_factor "
        f"{LBP_SCALE_FACTOR}, step_ratio 1, min_size {min_face}"
    )
    return FaceDetector("lbp", describe, find)


def _mtcnn(name: str, min_face: int) -> FaceDetector:
    from templater import mtcnn

    nets = mtcnn.OnnxRuntimeNets(threads=1) if name == "mtcnn-ort" else mtcnn.ReferenceNets()

    def find(rgb: np.ndarray) -> Boxes:
        boxes, scores, _ = mtcnn.detect(rgb, nets, min_face=min_face)
        return boxes, scores

    where = "onnxruntime, one thread" if name == "mtcnn-ort" else "templater's numpy reference"
    return FaceDetector(name, f"MTCNN cascade (templater.mtcnn_cascade), nets by {where}", find)


def _own(min_face: int, folder: Path | None = None) -> FaceDetector:
    """templater's own convolutional detector (the compiled program over a pyramid,
    templater.own_detector): the committed one in generated/own, or a `train-conv` folder."""
    from templater import own_detector
    from templater.programs import import_program

    committed = folder is None
    folder = own_detector.GENERATED if folder is None else folder
    detector = own_detector.load(folder / "model.npz")
    program = import_program(folder / "own_numba.py")

    def find(rgb: np.ndarray) -> Boxes:
        found = np.asarray(detector.find_faces(rgb, min_face, program=program), np.float64)
        r, c, s, v = found.reshape(-1, 4).T
        return np.column_stack([c, r, c + s, r + s]), v

    if committed:
        return FaceDetector("own", "own convolutional detector (generated/own, gray)", find)
    return FaceDetector(str(folder), f"own convolutional detector ({folder}, gray)", find)


def _program(path: Path, min_face: int) -> FaceDetector:
    """An MTCNN-style program (find_faces(image, min_face=...) -> boxes, scores, landmarks) or a
    dense face program / model (find_faces(gray, scales) -> (row, col, size, score))."""
    if path.suffix == ".py":
        from templater.programs import import_program

        module = import_program(path)
        find_faces = getattr(module, "find_faces", None)
        if callable(find_faces) and "min_face" in inspect.signature(find_faces).parameters:

            def find(rgb: np.ndarray) -> Boxes:
                boxes, scores = find_faces(rgb, min_face=min_face)[:2]
                return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64)

            return FaceDetector(str(path), f"program {path.name} (find_faces, colour)", find)
    return _dense(path, min_face)


def _dense(path: Path, min_face: int) -> FaceDetector:
    from templater import detect, scan
    from templater.data.faces import gray as to_gray

    detector = detect.load_detector(path)
    window = scan.WINDOW

    def find(rgb: np.ndarray) -> Boxes:
        gray = to_gray(rgb)
        first = window / min_face
        scales = []
        while min(gray.shape) * first * DENSE_FACTOR ** len(scales) >= window:
            scales.append(first * DENSE_FACTOR ** len(scales))
        if not scales:
            return np.empty((0, 4)), np.empty(0)
        out = np.asarray(detector.find(gray, scales=tuple(scales)), np.float64).reshape(-1, 4)
        r, c, s, v = out.T
        return np.column_stack([c, r, c + s, r + s]), v

    describe = (
        f"{detector.kind} {path.name} (gray, {window}x{window} windows, scales "
        f"{window}/{min_face} * {DENSE_FACTOR}^k)"
    )
    return FaceDetector(str(path), describe, find)
