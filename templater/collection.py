"""Photo collections: find the images, run a detector over each (in this process, in local worker
processes or on dask.distributed), and stream one record per image to the one results writer.

The worker's side (the detector, one image -> one record) is `collection_worker`; the runners
are `collection_runners`; the writers `results`. Every runner calls the same `detect_file` on the
same absolute paths, so the records are the same whatever ran them, apart from `seconds`.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from templater.collection_runners import choose_runner
from templater.collection_worker import (  # the public API, in one place
    DetectorSource,
    detect_file,
    detector_source,
    file_sha256,
    load,
    register_loader,
)
from templater.errors import TemplaterError, UsageError
from templater.results import open_results

__all__ = [
    "DetectorSource", "Progress", "Summary", "TemplaterError", "detect_file", "detector_source",
    "file_sha256", "find_images", "load", "register_loader", "run",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm",
                  ".ppm", ".pbm", ".npy")

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

