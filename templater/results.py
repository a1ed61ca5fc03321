"""Collection results: JSON Lines and Parquet writers, atomic per chunk, resumable by content hash.

A record is one image: {path, sha256, width, height, faces, boxes: [{row, col, size, score}],
detector, seconds, error}. An image that could not be read has `error` set (the reason), no
boxes, and no size (nor a hash when its bytes could not be read).

JSON Lines (the default): one record per line, appended a chunk at a time by one write and an
fsync. A run killed in the middle of a write can leave a torn last line; resuming cuts it off
(that image is then done again), so every record in the file is whole and none is lost.

Parquet (`.parquet`): one row per box, plus one row for each image without a box (box and its
columns null). Parquet files cannot be appended to, so chunks go to part files written
atomically in `RESULTS.parts/`; when the run ends they are merged (with the rows of an earlier
RESULTS when resuming) into RESULTS through a temporary file and a rename, then removed.

Resuming: an image is done when RESULTS holds a record with its path and its content hash (an
error record without a hash counts for its path). Records must all come from the same detector
(its digest): resuming with another one is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from templater.errors import UsageError
from templater.fileio import write_atomic

FIELDS = ("path", "sha256", "width", "height", "faces", "boxes", "detector", "seconds", "error")
BOX_FIELDS = ("row", "col", "size", "score")
# A chunk is written when it holds this many records or is this many seconds old.
CHUNK_RECORDS = 64
CHUNK_SECONDS = 2.0


def is_parquet(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(".parquet")


class Done:
    """What RESULTS already holds: (path, sha256) pairs, and paths recorded without a hash."""

    def __init__(self) -> None:
        self.pairs: set[tuple[str, str]] = set()
        self.unhashed: set[str] = set()
        self.paths: set[str] = set()
        self.records = 0

    def add(self, path: str, sha256: str | None) -> None:
        self.paths.add(path)
        if sha256 is None:
            self.unhashed.add(path)
        else:
            self.pairs.add((path, sha256))

    def has(self, path: str, sha256: str | None) -> bool:
        return path in self.unhashed or (sha256 is not None and (path, sha256) in self.pairs)


def _check_detector(where: str, found: str | None, digest: str) -> None:
    if found != digest:
        raise UsageError(
            f"{where}: these results come from detector {found}, not {digest}: resume with "
            "the same detector and settings, or write to another file"
        )


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Ctrl-C waits until the chunk is written (then raises): a chunk is written whole or not."""
    import signal

    blocked = {signal.SIGINT}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class Writer:
    """Collects records and writes them a chunk at a time; `close` finishes the file."""

    fd: int  # held open and locked for the whole run

    def __init__(self, path: Path, digest: str) -> None:
        self.path = path
        self.digest = digest
        self.created = not path.exists()  # removed again if the run writes nothing
        self.buffer: list[dict] = []
        self.started = time.monotonic()
        self.written = 0

    def add(self, record: dict) -> None:
        self.buffer.append(record)
        if (
            len(self.buffer) >= CHUNK_RECORDS
            or time.monotonic() - self.started >= CHUNK_SECONDS
        ):
            self.flush()

    def flush(self) -> None:
        records, self.buffer = self.buffer, []  # taken first: an interrupted write is never redone
        if records:
            with _no_interrupt():
                self._write_chunk(records)
                self.written += len(records)
        self.started = time.monotonic()

    def close(self) -> None:
        self.flush()

    def _write_chunk(self, records: list[dict]) -> None:
        raise NotImplementedError


# -- JSON Lines ------------------------------------------------------------------------------------
class JsonLinesWriter(Writer):
    def __init__(self, path: Path, digest: str) -> None:
        super().__init__(path, digest)
        try:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
        _lock(self.fd, path)

    def _write_chunk(self, records: list[dict]) -> None:
        data = "".join(json.dumps(r, allow_nan=False) + "\n" for r in records).encode("utf-8")
        view = memoryview(data)
        while view:  # one write in practice; a short write (a signal) continues where it stopped
            view = view[os.write(self.fd, view) :]
        os.fsync(self.fd)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            empty = os.fstat(self.fd).st_size == 0
            os.close(self.fd)
            if self.created and empty:  # judged by the file itself, not by a counter
                with contextlib.suppress(OSError):
                    self.path.unlink()


def _lock(fd: int, path: Path) -> None:
    """Hold an exclusive lock for this run: a second run on the same RESULTS would write twice."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise UsageError(f"{path}: another run is writing these results") from None


def read_jsonl(path: Path, repair: bool = False) -> Iterator[dict]:
    """The records of a JSON Lines RESULTS; with `repair`, first cut off a torn last line."""
    if repair:
        _cut_torn_tail(path)
    with path.open("rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if not isinstance(record, dict) or "path" not in record:
                raise UsageError(
                    f"{path}: line {number} is not a result record; not resuming a file this "
                    "run did not write"
                )
            yield record


def _cut_torn_tail(path: Path) -> None:
    size = path.stat().st_size
    if size == 0:
        return
    with path.open("rb+") as handle:
        handle.seek(size - 1)
        if handle.read(1) == b"\n":
            return
        # Walk back to the last newline: everything after it is a record cut by a kill.
        end = size
        while end > 0:
            step = min(65536, end)
            handle.seek(end - step)
            block = handle.read(step)
            at = block.rfind(b"\n")
            if at >= 0:
                end = end - step + at + 1
                break
            end -= step
        handle.truncate(end)
        handle.flush()
        os.fsync(handle.fileno())


# -- Parquet ---------------------------------------------------------------------------------------
def _schema():  # type: ignore[no-untyped-def]
    import pyarrow as pa

    return pa.schema(
        [
            ("path", pa.string()),
            ("sha256", pa.string()),
            ("width", pa.int64()),
            ("height", pa.int64()),
            ("faces", pa.int64()),
            ("detector", pa.string()),
            ("seconds", pa.float64()),
            ("error", pa.string()),
            ("box", pa.int64()),
            *((name, pa.float64()) for name in BOX_FIELDS),
        ]
    )


def _rows(records: Iterable[dict]) -> dict[str, list]:
    columns: dict[str, list] = {name: [] for name in _schema().names}
    for r in records:
        boxes = r["boxes"] or [None]
        for k, box in enumerate(boxes):
            for name in ("path", "sha256", "width", "height", "faces", "detector", "seconds",
                         "error"):
                columns[name].append(r[name])
            columns["box"].append(None if box is None else k)
            for name in BOX_FIELDS:
                columns[name].append(None if box is None else box[name])
    return columns


def records_from_table(table) -> list[dict]:  # type: ignore[no-untyped-def]
    """Parquet rows back into records (one per image, boxes in their order)."""
    records: dict[str, dict] = {}
    for row in table.to_pylist():
        record = records.get(row["path"])
        if record is None:
            record = {name: row.get(name) for name in FIELDS if name != "boxes"}
            record["boxes"] = []
            records[row["path"]] = record
        if row["box"] is not None:
            record["boxes"].append({name: row[name] for name in BOX_FIELDS})
    return [{name: r[name] for name in FIELDS} for r in records.values()]


def read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return records_from_table(pq.read_table(path))


class ParquetWriter(Writer):
    def __init__(self, path: Path, digest: str, parts: Path) -> None:
        super().__init__(path, digest)
        self.parts = parts
        self.created = self.created and not parts.exists()
        self.parts.mkdir(exist_ok=True)
        self.fd = os.open(parts, os.O_RDONLY)
        _lock(self.fd, path)
        self.next_part = len(_part_files(parts))

    def _write_chunk(self, records: list[dict]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.table(_rows(records), schema=_schema())
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(self.parts / f"{self.next_part:06d}.parquet", sink.getvalue().to_pybytes())
        self.next_part += 1

    def close(self) -> None:
        try:
            self.flush()
            if self.created and not _part_files(self.parts):
                shutil.rmtree(self.parts, ignore_errors=True)
            else:
                merge_parquet(self.path, self.parts)
        finally:
            os.close(self.fd)


def _part_files(parts: Path) -> list[Path]:
    return sorted(p for p in parts.glob("*.parquet") if not p.name.startswith("."))


def merge_parquet(path: Path, parts: Path) -> None:
    """RESULTS (if any) plus every part, streamed into a new RESULTS, then the parts removed."""
    import pyarrow.parquet as pq

    sources = ([path] if path.exists() else []) + _part_files(parts)
    tmp = path.with_name(f".{path.name}.merge.tmp")
    try:
        with pq.ParquetWriter(tmp, _schema()) as out:
            for source in sources:
                for batch in pq.ParquetFile(source).iter_batches(batch_size=4096):
                    out.write_batch(batch)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    shutil.rmtree(parts, ignore_errors=True)


def _parquet_done(path: Path, parts: Path, done: Done, digest: str) -> None:
    import pyarrow.parquet as pq

    for source in ([path] if path.exists() else []) + _part_files(parts):
        try:
            table = pq.read_table(source, columns=["path", "sha256", "detector"])
        except (OSError, ValueError) as exc:  # pyarrow's errors derive from these
            raise UsageError(f"{source}: not a readable results file ({exc})") from None
        seen: set[str] = set()
        for row in table.to_pylist():
            _check_detector(str(source), row["detector"], digest)
            if row["path"] not in seen:
                seen.add(row["path"])
                done.add(row["path"], row["sha256"])
                done.records += 1


# -- opening ---------------------------------------------------------------------------------------
def open_results(path: str | os.PathLike, digest: str, resume: bool) -> tuple[Writer, Done]:
    """A writer for RESULTS and what it already holds (empty unless resuming).

    Without `resume`, an existing RESULTS (or unfinished parts of one) is refused rather than
    written over.
    """
    path = Path(path)
    done = Done()
    parts = path.with_name(path.name + ".parts")
    exists = path.exists() or (is_parquet(path) and parts.exists())
    if exists and not resume:
        raise UsageError(
            f"{path} already exists: pass --resume to finish that run, or choose another file"
        )
    if path.is_dir():
        raise UsageError(f"{path} is a folder: RESULTS must be a .jsonl or .parquet file")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write {path}: no folder {path.parent}")
    if is_parquet(path):
        import pyarrow  # noqa: F401  (a missing extra is named here, before any work)

        writer: Writer = ParquetWriter(path, digest, parts)
    else:
        writer = JsonLinesWriter(path, digest)  # locked before it is read
    try:
        if resume and is_parquet(path):
            _parquet_done(path, parts, done, digest)
        elif resume:
            for record in read_jsonl(path, repair=True):
                _check_detector(str(path), record.get("detector"), digest)
                done.add(record["path"], record.get("sha256"))
                done.records += 1
    except BaseException:
        os.close(writer.fd)
        raise
    return writer, done


def read_results(path: str | os.PathLike) -> list[dict]:
    """Every record in a finished RESULTS file (JSON Lines or Parquet)."""
    path = Path(path)
    return read_parquet(path) if is_parquet(path) else list(read_jsonl(path))
