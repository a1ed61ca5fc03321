"""Collection benchmark: images/s of a serial loop, local worker processes and dask.distributed
over one folder of generated photos with pasted faces; and the photo generator itself.

Run on its own: `python -m templater.bench_collection [--images 200] [--pixels 250000]
[--json out.json]` prints a table and writes the rows as JSON. `rows()` returns the same rows
for `templater bench`.

Each row times one runner over the same images, from the start of the run (workers started,
detector loaded) to the last record, and also its steady rate: images after the first record
of each worker, over the time after it (start-up left out), and the mean time the detector
itself took per image inside the workers (it grows when other processes share the cores), and
`busy`, the share of the workers' wall time spent inside the detector (the rest is the
runner's overhead: start-up, reading, hashing, sending; it is the comparison that holds up on
a loaded machine, where the detector's own time changes from row to row). The
Dask rows run on a LocalCluster started before the clock starts (its own start is given apart),
as `--scheduler` would use one.
The machine's load average before and after each row is given: the numbers are only comparable
within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np

FACE_PHOTOS = ("rocket", "coffee")  # face-free backgrounds, never used in training
BROKEN = ("truncated.jpg", "not_an_image.png", "too_large.png", "empty.jpg", "tiny.png")


# -- photos ----------------------------------------------------------------------------------------
def make_photos(
    folder: str | os.PathLike, count: int = 200, pixels: int = 250_000, seed: int = 0,
    broken: bool = False, sub_folders: int = 4,
) -> dict[str, list[list[int]]]:
    """Write `count` gray photos of about `pixels` pixels (PNG and JPEG, in `sub_folders`
    folders) with lfw_subset faces pasted in, and with `broken`, the five files of BROKEN.

    Returns (and writes as faces.json) the pasted faces of each photo: [row, col, size].
    """
    from PIL import Image
    from skimage.data import lfw_subset

    from templater.data.faces import photo

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    faces = lfw_subset()[:100]
    backgrounds = [np.asarray(photo(name)) for name in FACE_PHOTOS]
    manifest: dict[str, list[list[int]]] = {}
    for i in range(count):
        aspect = rng.uniform(0.75, 1.33)
        h = max(40, round(float(np.sqrt(pixels / aspect))))
        w = max(40, round(pixels / h))
        img = _background(backgrounds[i % len(backgrounds)], h, w, rng)
        pasted = _paste_faces(img, faces, rng, 0 if i % 4 == 3 else int(rng.integers(1, 4)))
        sub = folder / f"set{i % sub_folders}"
        sub.mkdir(parents=True, exist_ok=True)
        name = sub / (f"photo{i:05d}" + (".png" if (i // sub_folders) % 2 else ".jpg"))
        pic = Image.fromarray(np.round(img * 255.0).astype(np.uint8), "L")
        pic.save(name, **({"quality": 90} if name.suffix == ".jpg" else {}))
        manifest[str(name.relative_to(folder))] = pasted
    if broken:
        write_broken(folder / "broken")
    (folder / "faces.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    return manifest


def _background(gray: np.ndarray, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    scale = max(h / gray.shape[0], w / gray.shape[1]) * rng.uniform(1.0, 1.5)
    size = (int(np.ceil(gray.shape[1] * scale)), int(np.ceil(gray.shape[0] * scale)))
    big = np.asarray(Image.fromarray(gray.astype(np.float32), "F").resize(size, Image.BILINEAR))
    r = int(rng.integers(0, big.shape[0] - h + 1))
    c = int(rng.integers(0, big.shape[1] - w + 1))
    out = np.array(big[r : r + h, c : c + w], dtype=np.float64)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _paste_faces(img: np.ndarray, faces: np.ndarray, rng: np.random.Generator, n: int) -> list:
    from PIL import Image

    h, w = img.shape
    placed: list[list[int]] = []
    for _ in range(n * 10):
        if len(placed) == n:
            break
        s = int(rng.integers(max(25, min(h, w) // 8), max(26, min(h, w) // 3)))
        r, c = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        if any(r < r2 + s2 and r2 < r + s and c < c2 + s2 and c2 < c + s for r2, c2, s2 in placed):
            continue
        face = faces[int(rng.integers(len(faces)))].astype(np.float32)
        img[r : r + s, c : c + s] = np.asarray(Image.fromarray(face, "F").resize((s, s)))
        placed.append([r, c, s])
    np.clip(img, 0.0, 1.0, out=img)
    return placed


def write_broken(folder: str | os.PathLike) -> list[Path]:
    """Five files no detector can read: a truncated JPEG, text named .png, a PNG whose header
    claims 8000x8000 pixels (over detect's limit), an empty file and a picture smaller than the
    window."""
    from io import BytesIO

    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = BytesIO()
    Image.fromarray(np.full((120, 120), 128, np.uint8), "L").save(jpeg, format="JPEG")
    data = {
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "not_an_image.png": b"this is a text file, not a picture\n",
        "too_large.png": _png_header(8_000, 8_000),
        "empty.jpg": b"",
    }
    for name, content in data.items():
        (folder / name).write_bytes(content)
    Image.fromarray(np.zeros((10, 10), np.uint8), "L").save(folder / "tiny.png")
    return [folder / name for name in BROKEN]


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


# -- timing ----------------------------------------------------------------------------------------
def _time_runner(runner: Any, source: Any, paths: list[str], first_k: int) -> dict[str, Any]:
    load = os.getloadavg()[0]
    start = time.perf_counter()
    arrivals, detecting = [], 0.0
    for record in runner.map(source, paths, None):
        if record["error"] is not None:
            raise RuntimeError(record["error"])
        arrivals.append(time.perf_counter())
        detecting += record["seconds"]
    total = arrivals[-1] - start
    workers = getattr(runner, "n", 1)
    k = min(first_k, len(arrivals) - 1)
    steady = (len(arrivals) - k) / (arrivals[-1] - arrivals[k - 1]) if k >= 1 else float("nan")
    return {
        "images": len(paths), "seconds": round(total, 3),
        "images_per_second": round(len(paths) / total, 2),
        "steady_images_per_second": round(steady, 2),
        "detector_seconds_per_image": round(detecting / len(paths), 4),
        "busy": round(detecting / (workers * total), 4),
        "load_before": round(load, 2), "load_after": round(os.getloadavg()[0], 2),
    }


def rows(
    folder: str | os.PathLike | None = None, images: int = 200, pixels: int = 250_000,
    detector: str | os.PathLike | None = None, local_workers: tuple[int, ...] = (1, 2),
    dask_workers: int = 2, progress: Any = None,
) -> list[dict[str, Any]]:
    """The benchmark rows (one per runner); photos are generated in `folder` (or a temp folder)."""
    from templater import collection
    from templater.collection_runners import LocalRunner, SerialRunner
    say = progress or (lambda _text: None)
    detector = detector or default_detector()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(folder or tmp)
        if not any(folder.rglob("photo*")):
            say(f"writing {images} photos of {pixels:,} pixels to {folder}")
            make_photos(folder, images, pixels)
        paths = collection.find_images([str(folder)])[:images]
        source = collection.detector_source(detector)
        out = []
        finder = collection.load(source)
        program = sys.modules.get(Path(detector).stem)
        threads = getattr(program, "THREADS", None)
        if program is not None and threads is not None:
            program.THREADS = 1  # the serial loop: one core, as one worker has
        say("serial loop")
        try:
            finder(np.zeros((50, 50)))  # compile (or load from cache) before the clock starts
            out.append({"runner": "serial loop", "workers": 1,
                        **_time_runner(SerialRunner(), source, paths, 1)})
        finally:
            if program is not None and threads is not None:
                program.THREADS = threads
        for n in local_workers:
            say(f"{n} local workers")
            out.append({"runner": "local workers", "workers": n,
                        **_time_runner(LocalRunner(n), source, paths, n)})
        if dask_workers:
            out.append(_dask_row(source, paths, dask_workers, say))
    return out


def pairs(
    images: int = 200, pixels: int = 250_000, n: int = 2, repeats: int = 2,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Local workers and Dask of `n` taken in turns, `repeats` times each, over the same photos:
    on a shared machine, neighbours in time see about the same load."""
    from distributed import LocalCluster

    from templater import collection
    from templater.collection_runners import DaskRunner, LocalRunner

    say = progress or (lambda _text: None)
    out = []
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        make_photos(tmp, images, pixels)
        paths = collection.find_images([tmp])
        source = collection.detector_source(default_detector())
        for k in range(repeats):
            say(f"pair {k + 1} of {repeats}")
            out.append({"runner": "local workers", "workers": n,
                        **_time_runner(LocalRunner(n), source, paths, n)})
            out.append({"runner": "dask", "workers": n,
                        **_time_runner(DaskRunner(cluster.scheduler_address, n), source, paths, n)})
    return out


def _dask_row(source: Any, paths: list[str], n: int, say: Any) -> dict[str, Any]:
    from distributed import LocalCluster

    from templater.collection_runners import DaskRunner

    say(f"dask LocalCluster of {n}")
    start = time.perf_counter()
    with LocalCluster(
        n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        started = time.perf_counter() - start
        row = _time_runner(DaskRunner(cluster.scheduler_address, n), source, paths, n)
    return {"runner": "dask", "workers": n, "cluster_start_seconds": round(started, 3), **row}


def overhead(results: list[dict[str, Any]]) -> dict[str, float]:
    """Dask's extra time against local workers of the same count (images/s, 1 - dask/local)."""
    out = {}
    for dask in (r for r in results if r["runner"] == "dask"):
        local = [r for r in results if r["runner"] == "local workers"
                 and r["workers"] == dask["workers"]]
        if local:
            for key in ("images_per_second", "steady_images_per_second", "busy"):
                out[key] = round(local[0][key] / dask[key] - 1.0, 4)
    return out


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'runner':<16}{'workers':>8}{'images':>8}{'seconds':>9}{'images/s':>10}"
             f"{'steady/s':>10}{'detect s':>10}{'busy':>7}{'load 1-min':>12}"]
    for r in results:
        lines.append(
            f"{r['runner']:<16}{r['workers']:>8}{r['images']:>8}{r['seconds']:>9.2f}"
            f"{r['images_per_second']:>10.2f}{r['steady_images_per_second']:>10.2f}"
            f"{r['detector_seconds_per_image']:>10.4f}{r['busy']:>7.3f}"
            f"{r['load_before']:>6.2f}-{r['load_after']:<5.2f}"
        )
    for key, value in overhead(results).items():
        lines.append(f"dask overhead against local workers ({key}): {100 * value:+.1f} %")
    dask = [r for r in results if "cluster_start_seconds" in r]
    if dask:
        seconds = dask[0]["cluster_start_seconds"]
        lines.append(f"dask LocalCluster start (not in the rows): {seconds} s")
    return "\n".join(lines)


def memory_check(
    count: int = 10_000, pixels: int = 4_096, workers: int = 2,
    folder: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Peak RSS of the writer (this process; the detector runs in `workers` processes) over a run
    of `count` small photos, and its RSS after each tenth of the images: flat, not growing."""
    import resource
    import threading

    import psutil

    from templater import collection

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(folder or Path(tmp) / "photos")
        if not any(folder.rglob("photo*")):
            make_photos(folder, count, pixels, sub_folders=20)
        source = collection.detector_source(default_detector())
        me, samples, stop = psutil.Process(), [], threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                samples.append(me.memory_info().rss)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            summary = collection.run([str(folder)], source, out or Path(tmp) / "results.jsonl",
                                     workers=workers)
        finally:
            stop.set()
            thread.join()
    tenths = [samples[len(samples) * k // 10] for k in range(1, 10)] + samples[-1:]
    return {
        "images": summary.done, "errors": summary.errors, "workers": workers,
        "seconds": round(summary.seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "rss_mb_by_tenth": [round(v / 2**20, 1) for v in tenths],
    }


def default_detector() -> Path:
    from templater.golden import default_root

    return default_root() / "face" / "face_numba.py"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m templater.bench_collection",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--pixels", type=int, default=250_000)
    parser.add_argument("--folder", help="Photos here (generated when it has none).")
    parser.add_argument("--detector", help="A face program [the committed face_numba.py].")
    parser.add_argument("--json", help="Write the rows here.")
    parser.add_argument("--pairs", type=int, metavar="K",
                        help="Instead: local workers and Dask in turns, K times each.")
    parser.add_argument("--memory", type=int, metavar="N",
                        help="Instead: the writer's peak RSS over N small photos.")
    args = parser.parse_args(argv)
    if args.pairs:
        results = pairs(args.images, args.pixels, repeats=args.pairs,
                        progress=lambda text: print(text, file=sys.stderr, flush=True))
        print(table(results))
        for local, dask in zip(results[::2], results[1::2], strict=True):
            rate = local["images_per_second"] / dask["images_per_second"] - 1
            busy = local["busy"] / dask["busy"] - 1
            print(f"pair: dask overhead {100 * rate:+.1f} % (images/s), {100 * busy:+.1f} % (busy)")
        if args.json:
            from templater.fileio import write_atomic

            write_atomic(args.json, json.dumps({"pairs": results}, indent=2) + "\n")
        return
    if args.memory:
        result = memory_check(args.memory, folder=args.folder)
        print(json.dumps(result))
        if args.json:
            from templater.fileio import write_atomic

            write_atomic(args.json, json.dumps(result, indent=2) + "\n")
        return
    results = rows(args.folder, args.images, args.pixels, args.detector,
                   progress=lambda text: print(text, file=sys.stderr, flush=True))
    print(table(results))
    if args.json:
        from templater.fileio import write_atomic

        doc = {"rows": results, "overhead": overhead(results), "cores": os.cpu_count()}
        write_atomic(args.json, json.dumps(doc, indent=2) + "\n")
        print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
