"""Evaluation: run face detectors over the labelled photos and count faces found, false boxes
per megapixel and time per megapixel, the way OpenCV and WIDER FACE judge detectors.

Matching, per photo: labelled faces smaller than the smallest face size become ignore regions.
Detections are taken best score first; each matches the still unmatched face it overlaps most
with IoU >= IOU (found). A detection matching no face is ignored when at least half of it lies
inside one ignore region or its IoU with one is >= IOU, else it is a false box (a second box on
an already found face is false too).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from templater.data.eval import fetch
from templater.face_detectors import FaceDetector

IOU = 0.4
DEFAULT_MIN_FACE = 24
COLOURS = ((255, 64, 64), (64, 160, 255), (255, 200, 0), (0, 220, 120), (220, 90, 255),
           (255, 140, 0), (0, 230, 230), (160, 160, 160))


def iou(a: Sequence[float], b: np.ndarray) -> np.ndarray:
    """IoU of box `a` with each row of `b` (x0, y0, x1, y1 edges)."""
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0.0, None)
    h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0.0, None)
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def inside(a: Sequence[float], b: np.ndarray) -> np.ndarray:
    """The fraction of box `a`'s area inside each row of `b`."""
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    w = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0.0, None)
    h = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0.0, None)
    area = max((a[2] - a[0]) * (a[3] - a[1]), 1e-12)
    return w * h / area


@dataclass(frozen=True)
class Match:
    found: int  # labelled faces matched
    faces: int  # labelled faces at least the smallest face size
    false: int
    ignored: int
    kinds: tuple[str, ...]  # per detection: "found", "false" or "ignored"


def match(
    boxes: np.ndarray,
    scores: np.ndarray,
    faces: Sequence[Sequence[float]],
    ignore: Sequence[Sequence[float]] = (),
    min_face: float = 0.0,
    threshold: float = IOU,
) -> Match:
    """Score one photo's detections against its labels (see the module docstring)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    big = [f for f in faces if min(f[2] - f[0], f[3] - f[1]) >= min_face]
    small = [f for f in faces if min(f[2] - f[0], f[3] - f[1]) < min_face]
    face_arr = np.asarray(big, dtype=np.float64).reshape(-1, 4)
    ignore_arr = np.asarray(list(ignore) + small, dtype=np.float64).reshape(-1, 4)
    taken = np.zeros(len(face_arr), dtype=bool)
    kinds = [""] * len(boxes)
    for i in np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable"):
        overlap = iou(boxes[i], face_arr)
        free = np.where(taken, -1.0, overlap)
        if len(free) and free.max() >= threshold:
            taken[int(np.argmax(free))] = True
            kinds[i] = "found"
        elif len(ignore_arr) and (
            inside(boxes[i], ignore_arr).max() >= 0.5
            or iou(boxes[i], ignore_arr).max() >= threshold
        ):
            kinds[i] = "ignored"
        else:
            kinds[i] = "false"
    return Match(
        int(taken.sum()), len(face_arr), kinds.count("false"), kinds.count("ignored"), tuple(kinds)
    )


@dataclass
class Result:
    """One detector over one set of photos."""

    name: str
    describe: str
    photos: list[dict] = field(default_factory=list)

    def totals(self, megapixels: float) -> dict:
        found = sum(p["found"] for p in self.photos)
        faces = sum(p["faces"] for p in self.photos)
        false = sum(p["false"] for p in self.photos)
        seconds = sum(p["seconds"] for p in self.photos)
        return {
            "faces_found": found,
            "faces": faces,
            "recall": found / faces if faces else None,
            "false_boxes": false,
            "false_per_megapixel": false / megapixels,
            "seconds": seconds,
            "seconds_per_megapixel": seconds / megapixels,
        }


def run(
    detectors: Sequence[FaceDetector],
    set_name: str = "eval",
    min_face: int = DEFAULT_MIN_FACE,
    progress: Callable[[str], None] = lambda text: None,
    limit: int | None = None,
    available_only: bool = False,
) -> dict:
    """Every detector over every photo of the set: the report as a JSON-ready dict.
    `available_only`: skip the photos whose package is not installed (the report counts them)."""
    photos = fetch.photos(set_name)[:limit]
    missing = [p.name for p in photos if available_only and fetch.status(p) == "missing"]
    photos = [p for p in photos if p.name not in missing]
    images = {p.name: fetch.load_rgb(p) for p in photos}
    megapixels = sum(im.shape[0] * im.shape[1] for im in images.values()) / 1e6
    results = []
    for detector in detectors:
        result = Result(detector.name, detector.describe)
        warm = max(photos, key=lambda p: len(p.faces)) if photos else None
        if warm is not None:
            detector.find(images[warm.name])  # first call: JIT, caches, sessions
        for n, photo in enumerate(photos, 1):
            start = time.perf_counter()
            boxes, scores = detector.find(images[photo.name])
            seconds = time.perf_counter() - start
            boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)
            m = match(boxes, scores, photo.faces, photo.ignore, min_face)
            result.photos.append({
                "photo": photo.name, "found": m.found, "faces": m.faces, "false": m.false,
                "ignored": m.ignored, "seconds": seconds,
                "boxes": [[round(float(v), 2) for v in b] + [round(float(s), 6), k]
                          for b, s, k in zip(boxes, scores, m.kinds, strict=True)],
            })
            progress(f"{detector.name}: {n}/{len(photos)} {photo.name} ({seconds:.2f} s)")
        results.append(result)
    return {
        "set": set_name,
        "min_face": min_face,
        "iou": IOU,
        "photos": len(photos),
        "missing_photos": missing,
        "megapixels": round(megapixels, 4),
        "labelled_faces": sum(len(p.faces) for p in photos),
        "detectors": [
            {"name": r.name, "describe": r.describe, **r.totals(megapixels), "per_photo": r.photos}
            for r in results
        ],
    }


def table(report: dict) -> str:
    """The report as a plain-text table, one detector per line."""
    head = (
        f"{report['photos']} photos ({report['set']}), {report['megapixels']:.2f} MP, "
        f"smallest face {report['min_face']} px, IoU >= {report['iou']}"
    )
    lines = [head, "", f"{'detector':<28} {'faces found':>12} {'false boxes':>12} "
             f"{'false/MP':>9} {'s/MP':>8}"]
    for d in report["detectors"]:
        name = d["name"] if len(d["name"]) <= 28 else "..." + d["name"][-25:]
        lines.append(
            f"{name:<28} {d['faces_found']:>5} of {d['faces']:<4} {d['false_boxes']:>12} "
            f"{d['false_per_megapixel']:>9.2f} {d['seconds_per_megapixel']:>8.3f}"
        )
    if report.get("missing_photos"):
        lines.append(
            f"({len(report['missing_photos'])} labelled photos left out: their package is not "
            "installed; `python -m templater.data.eval.fetch` says which)"
        )
    return "\n".join(lines)


def to_json(report: dict) -> str:
    return json.dumps(report, indent=1, sort_keys=False) + "\n"


def contact_sheet(report: dict, tile: int = 256) -> bytes:
    """PNG: each photo with labels or detections, labelled faces white, ignore regions grey,
    each detector's boxes in its own colour (legend on top)."""
    from PIL import Image, ImageDraw

    photos = {p.name: p for p in fetch.photos(report["set"])}
    detectors = report["detectors"]
    names = [pp["photo"] for pp in detectors[0]["per_photo"]] if detectors else []
    shown = [
        n for i, n in enumerate(names)
        if photos[n].faces or photos[n].ignore or any(d["per_photo"][i]["boxes"] for d in detectors)
    ]
    cols = 6
    legend = 18 * (len(report["detectors"]) + 1)
    rows = max(1, -(-len(shown) // cols))
    sheet = Image.new("RGB", (cols * tile, legend + rows * (tile + 14)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((4, 2), "white: labelled face, grey: ignore region", fill=(0, 0, 0))
    for k, d in enumerate(report["detectors"]):
        draw.text((4, 18 * (k + 1) + 2), f"{d['name']}", fill=COLOURS[k % len(COLOURS)])
    for slot, name in enumerate(shown):
        photo = photos[name]
        image = Image.fromarray(fetch.load_rgb(photo))
        scale = tile / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size)
        pen = ImageDraw.Draw(image)
        for box in photo.ignore:
            pen.rectangle([v * scale for v in box], outline=(128, 128, 128), width=1)
        for box in photo.faces:
            pen.rectangle([v * scale for v in box], outline=(255, 255, 255), width=3)
        index = names.index(name)
        for k, d in enumerate(report["detectors"]):
            for *box, _score, _kind in d["per_photo"][index]["boxes"]:
                pen.rectangle([v * scale for v in box], outline=COLOURS[k % len(COLOURS)], width=1)
        x, y = (slot % cols) * tile, legend + (slot // cols) * (tile + 14)
        sheet.paste(image, (x, y))
        draw.text((x + 2, y + tile), name, fill=(0, 0, 0))
    out = io.BytesIO()
    sheet.save(out, format="PNG")
    return out.getvalue()
