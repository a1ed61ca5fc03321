"""Photo collections: find the images, run a detector over each (here, in local worker processes
or on dask.distributed), and stream one record per image to the one results writer.

The detector is a `DetectorSource`: a small, picklable description (a kind, a file name, the
file's bytes, the scan settings) that a registered loader turns into a callable
`find(gray) -> (n, 4) boxes of (row, col, size, score)`. The bytes travel to every worker, which
loads them once (a generated program is imported and compiled by numba once per process, from
numba's on-disk cache beside the file) and keeps the callable for every image it gets. Other
detectors (a convolutional program, MTCNN) plug in with `register_loader`.

Every runner calls the same `detect_file` on the same absolute paths, so the records are the same
whatever ran them, apart from `seconds`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from templater.errors import TemplaterError, UsageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pbm", ".npy")
# Files larger than this are not read at all (an image of MAX_IMAGE_PIXELS is far smaller).
MAX_FILE_BYTES = 1 << 30
# Folder where workers that cannot see the detector file write its bytes (by digest).
PROGRAM_CACHE = Path(
    os.environ.get("TEMPLATER_PROGRAM_CACHE", Path(tempfile.gettempdir()) / "templater-programs")
)

Finder = Callable[[np.ndarray], np.ndarray]


# -- finding the images --------------------------------------------------------------------------
def find_images(paths: Sequence[str]) -> list[str]:
    """Absolute paths of the images named by files, folders (recursive) and globs, sorted, once.

    A file named explicitly is taken whatever its suffix (it may become an error record); inside
    folders and globs only files with an image suffix (IMAGE_SUFFIXES) are taken.
    """
    found: set[str] = set()
    for given in paths:
        if os.path.isdir(given):
            for root, dirs, files in os.walk(given):
                dirs.sort()
                found.update(os.path.join(root, f) for f in files if _is_image_name(f))
        elif os.path.lexists(given):
            found.add(given)
        elif glob.has_magic(given):
            matches = glob.glob(given, recursive=True)
            if not matches:
                raise UsageError(f"{given}: no file matches")
            for match in matches:
                if os.path.isdir(match):
                    found.update(find_images([match]))
                elif _is_image_name(match):
                    found.add(match)
        else:
            raise UsageError(f"{given}: no such file or folder")
    return sorted({os.path.abspath(p) for p in found})


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES) and not os.path.basename(name).startswith(".")


def file_sha256(path: str) -> str:
    """The content hash of a file (OSError when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- detectors -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DetectorSource:
    """What a worker needs to build a detector: a loader kind, a file's name and bytes, settings.

    `digest` (16 hex digits of the SHA-256 of the kind, the bytes and the settings) names it in
    every record and keys the per-process cache of loaded detectors.
    """

    kind: str
    name: str
    data: bytes
    settings: tuple[tuple[str, Any], ...] = ()
    path: str = ""  # where the client read it; a worker that sees the same bytes there uses it
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        h = hashlib.sha256(self.kind.encode() + b"\0" + self.data)
        h.update(json.dumps(self.settings).encode())
        object.__setattr__(self, "digest", h.hexdigest()[:16])


Loader = Callable[[DetectorSource, "int | None"], Finder]
LOADERS: dict[str, Loader] = {}


def register_loader(kind: str, loader: Loader) -> None:
    """Make `DetectorSource(kind, ...)` loadable: loader(source, threads) -> find(gray) -> boxes.

    `threads` is the number of threads one worker's detector may use (None: its own default).
    """
    LOADERS[kind] = loader


def detector_source(
    path: str | os.PathLike, threshold: float | None = None, stride: int | None = None
) -> DetectorSource:
    """A generated face program (.py) or face model file as a DetectorSource."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the detector: {exc.strerror or exc}") from None
    settings: list[tuple[str, Any]] = []
    if threshold is not None:
        settings.append(("threshold", float(threshold)))
    if stride is not None:
        if stride < 1:
            raise UsageError(f"--stride must be at least 1, got {stride}")
        settings.append(("stride", int(stride)))
    return DetectorSource("file", path.name, data, tuple(settings), str(path.resolve()))


def _file_on_disk(source: DetectorSource) -> Path:
    """The detector's file: the client's own when this process sees the same bytes there (numba's
    cache beside it is then shared), else a copy under PROGRAM_CACHE named by digest."""
    if source.path:
        with_same_bytes = Path(source.path)
        try:
            if with_same_bytes.read_bytes() == source.data:
                return with_same_bytes
        except OSError:
            pass
    folder = PROGRAM_CACHE / source.digest
    target = folder / source.name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            handle.write(source.data)
        try:  # a link never replaces: workers racing here all end up with the same file
            os.link(tmp, target)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    return target


def _load_file(source: DetectorSource, threads: int | None) -> Finder:
    from templater.detect import load_detector, program_detector

    path = _file_on_disk(source)
    if path.suffix == ".py":
        from templater.programs import import_program

        module = import_program(path)
        detector = program_detector(module, source.name)
        if threads is not None and hasattr(module, "THREADS"):
            module.THREADS = threads  # one worker per core: the program's own threads would fight
    else:
        detector = load_detector(path)
    settings = dict(source.settings)
    find = detector.find

    def finder(gray: np.ndarray) -> np.ndarray:
        return np.asarray(find(gray, **settings), dtype=np.float64).reshape(-1, 4)

    return finder


register_loader("file", _load_file)

# The detectors this process has loaded, by digest: each is loaded once per process.
_loaded: dict[str, Finder] = {}
load_calls = 0  # how many times this process ran a loader (tests check: once per worker)


def load(source: DetectorSource, threads: int | None = None) -> Finder:
    """The detector's callable, loaded on the first call in this process and kept."""
    global load_calls
    if source.digest not in _loaded:
        load_calls += 1
        loader = LOADERS.get(source.kind)
        if loader is None:
            raise UsageError(f"no loader for detectors of kind {source.kind!r}")
        _loaded[source.digest] = loader(source, threads)
    return _loaded[source.digest]


def loaded(digest: str) -> Finder:
    try:
        return _loaded[digest]
    except KeyError:
        raise TemplaterError(f"detector {digest} was not loaded in this worker") from None


# -- one image -----------------------------------------------------------------------------------
def error_record(path: str, digest: str, reason: str | None) -> dict[str, Any]:
    """A record without boxes: an image that could not be read (or, with no reason, a blank)."""
    return {"path": path, "sha256": None, "width": None, "height": None, "faces": 0,
            "boxes": [], "detector": digest, "seconds": 0.0,
            "error": None if reason is None else f"{path}: {reason}"}


def detect_file(path: str, digest: str, png_dir: str | None = None) -> dict:
    """The record of one image, with the detector loaded in this process; never raises for a bad
    image: one that cannot be read becomes a record with `error` set."""
    from templater.detect import draw_boxes, read_image
    from templater.results import BOX_FIELDS

    record = error_record(path, digest, None)
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            record["error"] = f"{path}: file larger than {MAX_FILE_BYTES:,} bytes"
            return record
        record["sha256"] = file_sha256(path)
    except OSError as exc:
        record["error"] = f"{path}: cannot read: {exc.strerror or exc}"
        return record
    try:
        gray, rgb = read_image(path)
    except TemplaterError as exc:
        record["error"] = str(exc)
        return record
    except (OSError, MemoryError) as exc:
        record["error"] = f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc!r}"
        return record
    record["height"], record["width"] = int(gray.shape[0]), int(gray.shape[1])
    start = time.perf_counter()
    try:
        boxes = loaded(digest)(gray)
    except (TypeError, ValueError, MemoryError) as exc:
        record["error"] = f"{path}: the detector refused the image: {exc}"
        return record
    record["seconds"] = round(time.perf_counter() - start, 6)
    record["faces"] = len(boxes)
    record["boxes"] = [dict(zip(BOX_FIELDS, map(float, box), strict=True)) for box in boxes]
    if png_dir is not None and len(boxes):
        from templater.fileio import write_atomic

        name = f"{Path(path).stem}.{record['sha256'][:12]}.png"
        write_atomic(Path(png_dir) / name, draw_boxes(rgb, boxes))
    return record


# -- progress and summary ------------------------------------------------------------------------
class Progress:
    """A progress line with images/s and an ETA: redrawn in place on a terminal, else a line every
    `interval` seconds (and at the end)."""

    def __init__(self, total: int, stream: TextIO | None = None, interval: float = 10.0) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.2 if self.tty else interval
        self.start = time.monotonic()
        self.shown = self.start
        self.done = self.faces = self.errors = 0

    def update(self, record: dict) -> None:
        self.done += 1
        self.faces += record["faces"]
        self.errors += record["error"] is not None
        now = time.monotonic()
        if now - self.shown >= self.interval or self.done == self.total:
            self.shown = now
            self._show(now)

    def _show(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        line = (
            f"{self.done:,}/{self.total:,} images {100.0 * self.done / max(self.total, 1):5.1f}%"
            f"  {rate:6.1f} images/s  ETA {_duration(left)}  {self.faces:,} faces"
            f"  {self.errors:,} errors"
        )
        end = "\n" if not self.tty or self.done == self.total else ""
        self.stream.write(("\r" if self.tty else "") + line + end)
        self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "--:--"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60:02d}:{rest % 60:02d}"


@dataclass
class Summary:
    images: int = 0  # found
    skipped: int = 0  # already in RESULTS
    done: int = 0  # records written by this run
    faces: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_examples: list[str] = field(default_factory=list)
    runner: str = ""

    @property
    def images_per_second(self) -> float:
        return self.done / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        out = [
            f"{self.done:,} images ({self.runner}), {self.faces:,} faces, {self.errors:,} errors,"
            f" {self.seconds:.1f} s, {self.images_per_second:.1f} images/s"
            + (f"; {self.skipped:,} skipped (already in the results)" if self.skipped else "")
        ]
        out += [f"  error: {e}" for e in self.error_examples]
        if self.errors > len(self.error_examples):
            out.append(f"  ... and {self.errors - len(self.error_examples):,} more errors")
        return out


# -- the run -------------------------------------------------------------------------------------
def pending(images: Iterable[str], done: Any) -> tuple[list[str], int]:
    """The images not in RESULTS yet, and how many were skipped (a file whose path is in RESULTS
    is hashed to see whether that record is of its current content)."""
    todo, skipped = [], 0
    for path in images:
        if path in done.paths:
            try:
                sha = file_sha256(path)
            except OSError:
                sha = None
            if done.has(path, sha):
                skipped += 1
                continue
        todo.append(path)
    return todo, skipped


def run(
    paths: Sequence[str],
    source: DetectorSource,
    out: str | os.PathLike,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    dask_local: bool = False,
    resume: bool = False,
    png_dir: str | None = None,
    progress: TextIO | None = None,
    progress_interval: float = 10.0,
) -> Summary:
    """Detect faces in every image under `paths`, writing one record per image to `out`.

    workers: local processes (default: the cores this process may use; 0: in this process).
    scheduler: a dask.distributed scheduler address; dask_local: a LocalCluster of `workers`.
    """
    from templater.collection_runners import choose_runner
    from templater.results import open_results

    images = find_images(paths)
    if not images:
        raise UsageError("no images found in " + ", ".join(paths))
    runner = choose_runner(workers, scheduler, dask_local)
    if png_dir is not None:
        Path(png_dir).mkdir(parents=True, exist_ok=True)
    writer, done = open_results(out, source.digest, resume)
    summary = Summary(images=len(images), runner=runner.describe())
    try:
        todo, summary.skipped = pending(images, done) if resume else (images, 0)
        bar = Progress(len(todo), progress, progress_interval) if progress is not None else None
        start = time.monotonic()
        for record in runner.map(source, todo, png_dir) if todo else ():  # no cluster for none
            writer.add(record)
            summary.done += 1
            summary.faces += record["faces"]
            if record["error"] is not None:
                summary.errors += 1
                if len(summary.error_examples) < 5:
                    summary.error_examples.append(record["error"])
            if bar is not None:
                bar.update(record)
        summary.seconds = time.monotonic() - start
    finally:
        writer.close()  # what came back is kept, also on Ctrl-C or a crash
    return summary

