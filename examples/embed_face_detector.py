"""Embedding the MTCNN face detector: one copied, generated file (numpy + numba; no templater).

    python embed_face_detector.py mtcnn_numba.py photo.jpg [--min-face 20]

`mtcnn_numba.py` is generated/mtcnn/mtcnn_numba.py: copy it anywhere. The photo is read with
Pillow (PNG/JPEG; gray, RGB and RGBA all work) or is a .npy array (rows, cols[, 3]).
Prints one line per face, best first: x0 y0 x1 y1 score, then the five landmarks as x,y pairs.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np


def load_program(path: Path):
    """Import the generated file as a module under its own name (numba's cache records it)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def read_photo(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        return np.load(path, allow_pickle=False)
    from PIL import Image  # only for PNG/JPEG

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", type=Path)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--min-face", type=int, default=20)
    args = parser.parse_args(argv)
    detector = load_program(args.program)
    boxes, scores, marks = detector.find_faces(read_photo(args.photo), min_face=args.min_face)
    for box, score, points in zip(boxes, scores, marks, strict=True):
        pairs = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        print(" ".join(f"{float(v)!r}" for v in (*box, score)) + f"  {pairs}")
    print(f"{len(boxes)} face(s) found by program {detector.MODEL_DIGEST}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
