"""The own detector(s) against the committed 625-16-1 on the labelled evaluation photos.

    PYTHONPATH=. python docs/own_detector_eval.py MODEL_DIR... [--json OUT]

Photos and labels come from the evaluation set (templater/data/eval: labels.json and fetch.py,
built on the `evaluate` branch; this script loads that fetch.py by path, EVAL_DIR). Each
detector looks for faces of at least MIN_FACE pixels. A detection matches a labelled face at
IoU >= 0.4 (greedily, best score first); one that matches none and lies at least half inside an
ignore region (or a labelled face smaller than MIN_FACE) is not counted; every other is false.
The tuning photo (astronaut) is reported apart. "no-train" leaves out the evaluation photos that
templater.data.faces trains on (both detectors saw them as face-free training photos).
"""

import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from templater import own_detector
from templater.data.faces import TRAINING_PHOTOS, gray
from templater.programs import import_program

EVAL_DIR = Path(os.environ.get("EVAL_DIR", "/work/wt/evaluate/templater/data/eval"))
MIN_FACE = 24
IOU = 0.4
DENSE = Path(__file__).resolve().parent.parent / "generated" / "face" / "face_numba.py"
# The evaluation set's names of photos that templater.data.faces trains on.
TRAINED_ON = set(TRAINING_PHOTOS) | {"motorcycle_left"}


def _fetch():
    spec = importlib.util.spec_from_file_location("eval_fetch", EVAL_DIR / "fetch.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["eval_fetch"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _inside(box, region):
    w = max(0.0, min(box[2], region[2]) - max(box[0], region[0]))
    h = max(0.0, min(box[3], region[3]) - max(box[1], region[1]))
    return w * h >= 0.5 * (box[2] - box[0]) * (box[3] - box[1])


def score_photo(edges, photo):
    """(faces, found, false) for detections `edges` (x0, y0, x1, y1), best first."""
    faces = [f for f in photo.faces if f[2] - f[0] >= MIN_FACE]
    ignore = list(photo.ignore) + [f for f in photo.faces if f[2] - f[0] < MIN_FACE]
    used, found, false = set(), 0, 0
    for box in edges:
        best, best_iou = None, IOU
        for i, f in enumerate(faces):
            v = _iou(box, f)
            if i not in used and v >= best_iou:
                best, best_iou = i, v
        if best is not None:
            used.add(best)
            found += 1
        elif not any(_inside(box, r) for r in ignore):
            false += 1
    return len(faces), found, false


def dense_finder():
    program = import_program(DENSE)

    def find(g):
        first = 25 / MIN_FACE
        scales = []
        while min(g.shape) * first * 0.8 ** len(scales) >= 25:
            scales.append(first * 0.8 ** len(scales))
        return program.find_faces(g, scales=tuple(scales))

    return find


def own_finder(folder):
    det = own_detector.load(Path(folder) / "model.npz")
    program = import_program(Path(folder) / "own_numba.py")
    return lambda g: det.find_faces(g, MIN_FACE, program=program)


def evaluate(name, find, photos, fetch):
    rows = []
    for photo in photos:
        g = gray(fetch.load_rgb(photo))
        start = time.perf_counter()
        out = np.asarray(find(g)).reshape(-1, 4)
        seconds = time.perf_counter() - start
        r, c, s = out[:, 0], out[:, 1], out[:, 2]
        edges = np.column_stack([c, r, c + s, r + s])
        n, found, false = score_photo(edges, photo)
        rows.append({"photo": photo.name, "set": photo.set, "faces": n, "found": found,
                     "false": false, "megapixels": g.size / 1e6, "seconds": seconds})
    return {"detector": name, "photos": rows}


def totals(rows, keep):
    pick = [r for r in rows if keep(r)]
    mp = sum(r["megapixels"] for r in pick)
    return {
        "photos": len(pick),
        "faces": sum(r["faces"] for r in pick),
        "found": sum(r["found"] for r in pick),
        "false": sum(r["false"] for r in pick),
        "false_per_mp": sum(r["false"] for r in pick) / mp,
        "seconds_per_mp": sum(r["seconds"] for r in pick) / mp,
    }


def main():
    args = sys.argv[1:]
    out = None
    if "--json" in args:
        i = args.index("--json")
        out = args[i + 1]
        del args[i : i + 2]
    fetch = _fetch()
    photos = fetch.photos()
    finders = [("625-16-1", dense_finder())] + [(a, own_finder(a)) for a in args]
    results = []
    for name, find in finders:
        find(np.zeros((64, 64)))  # compile outside the timing
        res = evaluate(name, find, photos, fetch)
        res["eval"] = totals(res["photos"], lambda r: r["set"] == "eval")
        res["eval_no_train"] = totals(
            res["photos"], lambda r: r["set"] == "eval" and r["photo"] not in TRAINED_ON
        )
        res["tuning"] = totals(res["photos"], lambda r: r["set"] == "tuning")
        results.append(res)
        e, x, t = res["eval"], res["eval_no_train"], res["tuning"]
        print(f"{name:28s} eval: {e['found']}/{e['faces']} faces, {e['false']} false "
              f"({e['false_per_mp']:.2f}/MP, "
              f"{e['seconds_per_mp']:.2f} s/MP) | no-train: {x['found']}/{x['faces']}, "
              f"{x['false_per_mp']:.2f}/MP | astronaut: {t['found']}/{t['faces']}, "
              f"{t['false']} false", flush=True)
    if out:
        Path(out).write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
