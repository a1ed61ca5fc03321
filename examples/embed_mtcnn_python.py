"""Embedding the pure-Python MTCNN face detector: one copied, generated file, standard library
only (no numpy, no templater).

    templater compile-mtcnn --target python -o mtcnn_python.py
    python embed_mtcnn_python.py mtcnn_python.py photo.ppm [--min-face 20]

The photo is a binary PPM (P6, RGB) or PGM (P5, gray) with maxval up to 65535, or a .json file
holding nested lists (rows x cols, rows x cols x 3 or x 4) of numbers in [0, 255].
Prints one line per face, best first: x0 y0 x1 y1 score, then the five landmarks as x,y pairs;
on stderr, the time taken and seconds per megapixel. Pure Python is slow: expect about a
minute and a half per megapixel of photo at min_face 24.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path


def load_program(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_netpbm(data: bytes) -> list:
    """P5 (gray) or P6 (RGB), maxval <= 65535: nested lists of floats in [0, 255]."""
    fields: list[bytes] = []
    pos = 0
    while len(fields) < 4:  # magic, width, height, maxval; '#' comments allowed between
        while data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            pos = data.index(b"\n", pos) + 1
            continue
        end = pos
        while end < len(data) and not data[end : end + 1].isspace():
            end += 1
        fields.append(data[pos:end])
        pos = end
    magic, width, height, maxval = fields[0], int(fields[1]), int(fields[2]), int(fields[3])
    if magic not in (b"P5", b"P6") or not 0 < maxval < 65536:
        raise ValueError("expected a binary PGM (P5) or PPM (P6)")
    pixels = data[pos + 1 :]
    channels = 3 if magic == b"P6" else 1
    size = 2 if maxval > 255 else 1
    count = width * height * channels
    if len(pixels) < count * size:
        raise ValueError("the file ends before its pixels do")
    if size == 1:
        values = list(pixels[:count])
    else:
        values = [pixels[2 * i] * 256 + pixels[2 * i + 1] for i in range(count)]
    scale = 255.0 / maxval
    values = [v * scale for v in values] if maxval != 255 else values
    row_len = width * channels
    rows = [values[r * row_len : (r + 1) * row_len] for r in range(height)]
    if channels == 1:
        return rows
    return [[row[3 * j : 3 * j + 3] for j in range(width)] for row in rows]


def read_photo(path: Path) -> list:
    if path.suffix.lower() == ".json":
        return json.loads(path.read_text(encoding="utf-8"))
    return read_netpbm(path.read_bytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program", type=Path)
    parser.add_argument("photo", type=Path)
    parser.add_argument("--min-face", type=int, default=20)
    args = parser.parse_args(argv)
    detector = load_program(args.program)
    image = read_photo(args.photo)
    start = time.perf_counter()
    boxes, scores, marks = detector.find_faces(image, min_face=args.min_face)
    seconds = time.perf_counter() - start
    for box, score, points in zip(boxes, scores, marks, strict=True):
        pairs = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        print(" ".join(f"{float(v)!r}" for v in (*box, score)) + f"  {pairs}")
    megapixels = len(image) * len(image[0]) / 1e6
    print(
        f"{len(boxes)} face(s) found by program {detector.MODEL_DIGEST} in {seconds:.1f} s "
        f"({seconds / megapixels:.0f} s per megapixel)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
