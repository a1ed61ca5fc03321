"""The worker's side of a collection run: a detector loaded once per process, one image -> one
record.

The detector is a `DetectorSource`: a small, picklable description (a kind, a file name, the
file's bytes, the scan settings) that a registered loader turns into a callable
`find(gray) -> (n, 4) boxes of (row, col, size, score)`. The bytes travel to every worker, which
loads them once (a generated program is imported and compiled by numba once per process, from
numba's on-disk cache beside the file) and keeps the callable for every image it gets. Other
detectors (a convolutional program, MTCNN) plug in with `register_loader`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import TemplaterError, UsageError

# Files larger than this are not read at all (an image of MAX_IMAGE_PIXELS is far smaller).
MAX_FILE_BYTES = 1 << 30
# Folder where workers that cannot see the detector file write its bytes (by digest).
PROGRAM_CACHE = Path(
    os.environ.get("TEMPLATER_PROGRAM_CACHE", Path(tempfile.gettempdir()) / "templater-programs")
)

Finder = Callable[[np.ndarray], np.ndarray]


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
    from templater.face_demo import is_mtcnn_style

    kind = "mtcnn" if is_mtcnn_style(path) else "file"
    return DetectorSource(kind, path.name, data, tuple(settings), str(path.resolve()))


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


def _load_mtcnn(source: DetectorSource, threads: int | None) -> Finder:
    """An MTCNN-style program (find_faces(image, min_face=...)): boxes x0, y0, x1, y1 become
    (row, col, size, score) with size the larger side, like the other detectors' records."""
    from templater.programs import import_program

    del threads  # the cascade runs on one thread
    module = import_program(_file_on_disk(source))

    def finder(gray: np.ndarray) -> np.ndarray:
        boxes, scores, _ = module.find_faces(gray * 255.0)
        size = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        return np.column_stack([boxes[:, 1], boxes[:, 0], size, scores]).reshape(-1, 4)

    return finder


register_loader("mtcnn", _load_mtcnn)

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
