"""The main job: find the faces in a photo with the committed detectors, and compare them.

`run` finds the faces in a photo (the astronaut by default) with the compiled MTCNN program
(generated/mtcnn/mtcnn_numba.py), draws them with their landmarks into a PNG, then evaluates
the committed detectors beside OpenCV's Haar cascade and scikit-image's LBP cascade on the
labelled photos that are installed (templater.evaluate: faces found, false boxes and seconds
per megapixel, one thread each, the same smallest face).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from templater.golden import default_root

MIN_FACE = 24
# The committed detectors and their peers, in the order of the table.
COMMITTED = ("mtcnn/mtcnn_numba.py", "face/face_numba.py")
PEERS = ("own", "haar3", "lbp")


def committed_detectors(root: Path | None = None) -> list[str]:
    root = root or default_root()
    return [str(root / p) for p in COMMITTED if (root / p).is_file()]


# Detectors by name: the committed programs (the own detector's scan is templater.own_detector:
# `templater evaluate own`).
NAMED = {"mtcnn": "mtcnn/mtcnn_numba.py", "dense": "face/face_numba.py"}


def detector_path(name_or_path: str) -> str:
    """A committed detector's program by name (mtcnn, own, dense), else the path as given."""
    if name_or_path in NAMED:
        return str(default_root() / NAMED[name_or_path])
    return name_or_path


def is_mtcnn_style(path: str | Path) -> bool:
    """Whether a program's find_faces takes the colour photo and `min_face` (read as text,
    without running it)."""
    import ast

    path = Path(path)
    if path.suffix != ".py" or not path.is_file():
        return False
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(
        isinstance(node, ast.FunctionDef) and node.name == "find_faces"
        and "min_face" in [a.arg for a in node.args.args]
        for node in tree.body
    )


def find_with(program_path: str | Path, rgb: np.ndarray, min_face: int = MIN_FACE):
    """A program's faces in `rgb` and the seconds the call took (after a first call that
    compiles the kernels or loads them from numba's cache)."""
    from templater.programs import import_program

    program = import_program(program_path)
    program.find_faces(rgb[:64, :64], min_face=min_face)  # compile (or load the cache)
    start = time.perf_counter()
    found = program.find_faces(rgb, min_face=min_face)
    return found, time.perf_counter() - start


def find_faces(rgb: np.ndarray, min_face: int = MIN_FACE) -> tuple[Any, float]:
    """The compiled MTCNN program's faces in `rgb` and the seconds the call took."""
    return find_with(default_root() / NAMED["mtcnn"], rgb, min_face)


def picture(rgb: np.ndarray, boxes: np.ndarray, scores: np.ndarray, marks: np.ndarray) -> bytes:
    """The photo with a green box, its score and five red landmarks per face, as PNG bytes."""
    from PIL import Image, ImageDraw

    image = Image.fromarray(np.ascontiguousarray(rgb[:, :, :3]).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 300))
    for (x0, y0, x1, y1), score, points in zip(boxes, scores, marks, strict=True):
        draw.rectangle([x0, y0, x1, y1], outline=(0, 220, 0), width=width)
        draw.text((x0 + 2, max(0.0, y0 - 12)), f"{score:.3f}", fill=(0, 220, 0))
        for x, y in points:
            draw.ellipse([x - width, y - width, x + width, y + width], fill=(230, 30, 30))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def read_rgb(path: str | Path) -> np.ndarray:
    """A photo as it is (gray, RGB or RGBA; uint8 or uint16): the program converts it."""
    from templater.errors import UsageError

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such image file")
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a decompression bomb or a truncated file
            with Image.open(path) as image:
                if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV", "1"):
                    image = image.convert("RGBA" if "A" in image.mode else "RGB")
                return np.asarray(image)
    except (OSError, ValueError, Warning, Image.DecompressionBombError) as exc:
        raise UsageError(f"{path}: cannot read the image ({exc})") from exc


def run(
    output: str | Path,
    photo: str | Path | None = None,
    compare: bool = True,
    min_face: int = MIN_FACE,
    log: Callable[[str], None] = lambda text: None,
) -> dict[str, Any]:
    """Faces in `photo` (default: the astronaut) into `output` (PNG), then the comparison."""
    from templater import evaluate, face_detectors
    from templater.fileio import write_atomic

    if photo is None:
        from skimage import data

        rgb, name = data.astronaut(), "skimage.data.astronaut()"
    else:
        rgb, name = read_rgb(photo), str(photo)
    log(f"finding the faces in {name} with the compiled MTCNN program")
    (boxes, scores, marks), seconds = find_faces(rgb, min_face)
    write_atomic(output, picture(rgb, boxes, scores, marks))
    result: dict[str, Any] = {
        "photo": name,
        "faces": [[round(float(v), 1) for v in b] + [round(float(s), 4)]
                  for b, s in zip(boxes, scores, strict=True)],
        "seconds": seconds,
        "picture": str(output),
    }
    if compare:
        with face_detectors.one_thread():
            made = [face_detectors.make(d, min_face) for d in (*committed_detectors(), *PEERS)]
            result["evaluation"] = evaluate.run(
                made, "eval", min_face, progress=log, available_only=True
            )
    return result


def report(result: dict[str, Any]) -> str:
    from templater.evaluate import table

    lines = [f"{len(result['faces'])} face(s) in {result['photo']} "
             f"({result['seconds']:.3f} s; picture: {result['picture']}):"]
    lines += [f"  box {f[:4]} score {f[4]}" for f in result["faces"]]
    if "evaluation" in result:
        lines += ["", "The committed detectors beside OpenCV and scikit-image:", "",
                  table(result["evaluation"])]
    return "\n".join(lines)
