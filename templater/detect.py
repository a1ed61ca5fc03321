"""Detection: read a photo, run a face program (or model) over it, draw and report the boxes.

Images. PNG, JPEG (anything Pillow reads) or a `.npy` array. They become float64 grayscale in
[0, 1] by one documented rule: 8-bit gray is divided by 255; 16-bit gray by 65535; colour is
converted to luminance with scikit-image's weights (0.2125 R + 0.7154 G + 0.0721 B); an image
with transparency (RGBA, LA, palette with a transparent colour) is first composited on white.
A `.npy` array must be 2-D (H, W) or (H, W, 3|4) of numbers (never pickled), converted the same
way. Larger than MAX_IMAGE_PIXELS, or smaller than the 25x25 window, is refused.

Detectors. A `.py` file is a generated face program: its own `find_faces` runs. Any model file
(`.npz`, `.onnx`, ...) runs through the numpy reference scan (`templater.scan`, BLAS matmul).
"""

from __future__ import annotations

import io
import json
import os
import time
import types
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from templater import scan
from templater.errors import TemplaterError, UsageError
from templater.fileio import npy_header
from templater.network import Network

# Refused before decoding (from the header): a decompression bomb must not fill memory.
MAX_IMAGE_PIXELS = 50_000_000
BOX_COLOUR = (0, 255, 0)
LABEL_COLOUR = (255, 64, 64)

# find_faces(image, scales, stride, threshold) -> (n, 4) boxes
Finder = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Detector:
    """Something that finds faces: a generated program's find_faces or the reference scan."""

    find: Finder
    kind: str  # "program" or "model"
    path: str
    digest: str


@dataclass(frozen=True, eq=False)
class Detection:
    image: str
    shape: tuple[int, int]
    detector: Detector
    boxes: np.ndarray  # (n, 4): row, col, size, score; best first
    seconds: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "image": self.image,
                "height": self.shape[0],
                "width": self.shape[1],
                "detector": {
                    "kind": self.detector.kind,
                    "path": self.detector.path,
                    "model_digest": self.detector.digest,
                },
                "seconds": round(self.seconds, 6),
                "boxes": boxes_as_dicts(self.boxes),
            },
            indent=2,
        )


def boxes_as_dicts(boxes: np.ndarray) -> list[dict[str, float]]:
    return [
        {"row": float(r), "col": float(c), "size": float(s), "score": float(v)}
        for r, c, s, v in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    ]


def format_boxes(boxes: np.ndarray) -> str:
    """A small table: one box per line, best first."""
    lines = [f"{'row':>8} {'col':>8} {'size':>7} {'score':>9}"]
    for r, c, s, v in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        lines.append(f"{r:8.1f} {c:8.1f} {s:7.1f} {v:9.4f}")
    return "\n".join(lines)


# -- images ---------------------------------------------------------------------------------------
def read_image(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(gray float64 (H, W) in [0, 1], that gray image as RGB uint8 to draw on) from a file."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such image file")
    if path.suffix.lower() == ".npy":
        gray = _gray_from_array(_read_npy(path), str(path))
    else:
        gray = _read_picture(path)
    if gray.shape[0] < scan.WINDOW or gray.shape[1] < scan.WINDOW:
        raise UsageError(
            f"{path}: the image is {gray.shape[0]}x{gray.shape[1]} pixels, smaller than the "
            f"{scan.WINDOW}x{scan.WINDOW} window"
        )
    return gray, to_rgb(gray)


def to_rgb(gray: np.ndarray) -> np.ndarray:
    """A gray [0, 1] image as RGB uint8, to draw coloured boxes on."""
    return np.repeat(np.round(gray * 255.0).astype(np.uint8)[:, :, None], 3, axis=2)


def _read_npy(path: Path) -> np.ndarray:
    try:
        with path.open("rb") as handle:
            shape, _, dtype = npy_header(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable .npy array ({exc})") from None
    if int(np.prod(shape)) > MAX_IMAGE_PIXELS * 4:
        raise UsageError(
            f"{path}: array of shape {shape} is larger than {MAX_IMAGE_PIXELS:,} pixels"
        )
    if dtype.hasobject:
        raise UsageError(f"{path}: holds Python objects (pickled); refused as unsafe")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: not a readable .npy array ({exc})") from None


def _gray_from_array(arr: np.ndarray, where: str) -> np.ndarray:
    from templater.data.faces import gray

    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise UsageError(f"{where}: expected an array of numbers, got dtype {arr.dtype}")
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (3, 4))):
        raise UsageError(
            f"{where}: expected an image of shape (H, W), (H, W, 3) or (H, W, 4), got {arr.shape}"
        )
    if arr.size > MAX_IMAGE_PIXELS * 4:
        raise UsageError(f"{where}: {arr.shape} is larger than {MAX_IMAGE_PIXELS:,} pixels")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise UsageError(f"{where}: the image contains NaN or infinite pixels")
        if arr.min() < 0.0 or arr.max() > 1.0:
            raise UsageError(
                f"{where}: float pixels must lie in [0, 1], found {arr.min():g} .. {arr.max():g}"
            )
    return gray(arr)


def _read_picture(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns where it should refuse: DecompressionBombWarning from its own, larger
            # limit, "Truncated File Read" and the like for damaged files
            warnings.simplefilter("error")
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise UsageError(
                        f"{path}: the image is {w}x{h} pixels, more than {MAX_IMAGE_PIXELS:,}"
                    )
                im.load()
                return _gray_from_pil(im)
    except Image.DecompressionBombWarning as exc:
        raise UsageError(
            f"{path}: refused as a decompression bomb: more than {MAX_IMAGE_PIXELS:,} pixels "
            f"({exc})"
        ) from None
    except Warning as exc:
        raise UsageError(f"{path}: the image is truncated or corrupt (Pillow: {exc})") from None
    except UnidentifiedImageError:
        raise UsageError(f"{path}: not an image file (Pillow cannot identify it)") from None
    except Image.DecompressionBombError as exc:
        raise UsageError(f"{path}: refused as a decompression bomb ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise UsageError(f"{path}: the image is truncated or corrupt ({exc})") from None


def _gray_from_pil(im: object) -> np.ndarray:
    from PIL import Image

    assert isinstance(im, Image.Image)
    mode = im.mode
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im, dtype=np.float64)
        return np.clip(arr / 65535.0, 0.0, 1.0)
    alpha = "A" in mode or (mode == "P" and "transparency" in im.info)
    arr = np.asarray(im.convert("RGBA" if alpha else "RGB"))
    return _gray_from_array(arr, "image")


def draw_boxes(
    rgb: np.ndarray,
    boxes: np.ndarray,
    labelled: Sequence[tuple[float, float, float]] = (),
) -> bytes:
    """The picture with each box drawn (and labelled ground truth in red), as PNG bytes."""
    from PIL import Image, ImageDraw

    im = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    draw = ImageDraw.Draw(im)
    width = max(2, round(min(im.size) / 256))
    for r, c, s in labelled:
        draw.rectangle([c, r, c + s, r + s], outline=LABEL_COLOUR, width=max(1, width - 1))
    for r, c, s, v in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        draw.rectangle([c, r, c + s, r + s], outline=BOX_COLOUR, width=width)
        draw.text((c + width + 1, r + width), f"{v:.2f}", fill=BOX_COLOUR)
    out = io.BytesIO()
    im.save(out, format="PNG")
    return out.getvalue()


# -- detectors ------------------------------------------------------------------------------------
def load_detector(path: str | os.PathLike) -> Detector:
    """A generated face program (.py) or a face model file, ready to find faces."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such program or model file")
    if path.suffix == ".py":
        from templater.programs import import_program

        return program_detector(import_program(path), str(path))
    net = _load_model(path)
    _check_face_model(net, str(path))

    def find(image: np.ndarray, **settings: object) -> np.ndarray:
        return scan.scan(net, image, exact=False, **settings)  # type: ignore[arg-type]

    return Detector(find, "model", str(path), net.digest())


def program_detector(module: types.ModuleType, where: str) -> Detector:
    """A generated program's find_faces, after checking it is a face program."""
    find = getattr(module, "find_faces", None)
    shape = getattr(module, "INPUT_SHAPE", None)
    if not callable(find) or shape != (scan.WINDOW, scan.WINDOW):
        raise UsageError(
            f"{where}: not a face program: expected a generated program with find_faces over "
            f"{scan.WINDOW}x{scan.WINDOW} windows, found "
            + (f"input shape {shape!r}" if shape is not None else "no INPUT_SHAPE")
            + ("" if callable(find) else " and no find_faces")
        )
    return Detector(find, "program", where, str(getattr(module, "MODEL_DIGEST", "")))


def _load_model(path: Path) -> Network:
    try:
        from templater.importers import load_any
    except ImportError:  # importers still in progress: .npz only
        from templater.modelfile import load as load_any
    return load_any(path)


def _check_face_model(net: Network, where: str) -> None:
    if net.head.kind != "binary" or net.input_size != scan.WINDOW * scan.WINDOW:
        raise UsageError(
            f"{where}: not a face model: expected a binary head over {scan.WINDOW}x{scan.WINDOW}"
            f" windows ({scan.WINDOW * scan.WINDOW} inputs), found {net.architecture} with a "
            f"{net.head.kind} head"
        )


def detect(
    detector_path: str | os.PathLike,
    image_path: str | os.PathLike,
    threshold: float | None = None,
    stride: int | None = None,
    output: str | os.PathLike | None = None,
) -> Detection:
    """Find the faces in a photo; with `output`, also write the picture with the boxes (PNG)."""
    detector = load_detector(detector_path)
    gray, rgb = read_image(image_path)
    settings: dict[str, object] = {}
    if threshold is not None:
        settings["threshold"] = threshold
    if stride is not None:
        if stride < 1:
            raise UsageError(f"--stride must be at least 1, got {stride}")
        settings["stride"] = stride
    start = time.perf_counter()
    try:
        boxes = np.asarray(detector.find(gray, **settings), dtype=np.float64).reshape(-1, 4)
    except (TypeError, ValueError) as exc:
        raise TemplaterError(f"{detector.path}: find_faces refused {image_path}: {exc}") from exc
    seconds = time.perf_counter() - start
    if output is not None:
        from templater.fileio import write_atomic

        write_atomic(output, draw_boxes(rgb, boxes))
    return Detection(str(image_path), (gray.shape[0], gray.shape[1]), detector, boxes, seconds)
