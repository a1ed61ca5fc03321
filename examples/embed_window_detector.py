"""Embedding: find faces with one copied, generated program (numpy + numba; no templater).

    python embed_window_detector.py face_numba.py photo.png [--threshold T] [--stride N]

The program file is what `templater compile MODEL --target numba` (or generated/face/) gives;
copy it anywhere. The photo is a .npy array (H, W) in [0, 1], or a PNG/JPEG read with Pillow
if it is installed. Colour is turned into gray here, with the weights templater uses
(0.2125 R + 0.7154 G + 0.0721 B): the program itself refuses colour images.
Prints one line per face, best first: row col size score (pixels of the photo).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

LUMINANCE = np.array([0.2125, 0.7154, 0.0721])


def load_program(path: Path):
    """Import the generated file as a module (numba's cache wants it in sys.modules)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def read_gray(path: Path) -> np.ndarray:
    """A photo as float64 gray in [0, 1]."""
    if path.suffix.lower() == ".npy":
        image = np.load(path, allow_pickle=False)
    else:
        from PIL import Image  # only for PNG/JPEG

        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB"))
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image / 255.0
    if image.ndim == 3:
        image = image[..., :3] @ LUMINANCE
    return np.asarray(image, dtype=np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", type=Path)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--threshold", type=float, default=None)
    parser.add_argument("--stride", type=int, default=None)
    args = parser.parse_args(argv)
    detector = load_program(args.program)
    settings = {} if args.stride is None else {"stride": args.stride}
    boxes = detector.find_faces(read_gray(args.photo), threshold=args.threshold, **settings)
    for row, col, size, score in boxes:
        print(f"{float(row)!r} {float(col)!r} {float(size)!r} {float(score)!r}")
    print(f"{len(boxes)} face(s) found by program {detector.MODEL_DIGEST}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
