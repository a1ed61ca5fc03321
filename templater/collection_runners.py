"""Collection runners: in this process, in local worker processes, or on dask.distributed.

Each runner's `map(source, paths, png_dir)` runs `collection_worker.detect_file` on every path and
yields the records as they come back (in completion order), keeping a bounded number of images
in flight so that memory stays flat however large the collection.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

from templater.collection_worker import DetectorSource, detect_file, error_record, load
from templater.errors import TemplaterError, UsageError


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def choose_runner(workers: int | None, scheduler: str | None, dask_local: bool) -> Any:
    if workers is not None and workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {workers}")
    if scheduler and dask_local:
        raise UsageError("give either --scheduler or --dask local, not both")
    if scheduler or dask_local:
        return DaskRunner(scheduler, workers or default_workers())
    n = default_workers() if workers is None else workers
    return SerialRunner() if n == 0 else LocalRunner(n)


class SerialRunner:
    """In this process, one image after another (the program may use its own threads)."""

    def describe(self) -> str:
        return "in this process"

    def map(self, source: DetectorSource, paths: list[str], png_dir: str | None) -> Iterator[dict]:
        load(source)
        for path in paths:
            yield detect_file(path, source.digest, png_dir)


# In a worker process: why the detector could not be loaded, by digest.
_load_errors: dict[str, str] = {}


def _load_in_worker(source: DetectorSource) -> None:
    try:
        load(source, threads=1)
    except Exception as exc:  # reported to the client by the first task, not lost in a log
        _load_errors[source.digest] = f"{type(exc).__name__}: {exc}"


def _work(path: str, digest: str, png_dir: str | None) -> dict:
    if digest in _load_errors:
        raise TemplaterError(f"a worker could not load the detector: {_load_errors[digest]}")
    return detect_file(path, digest, png_dir)


def _init_local_worker(source: DetectorSource, parent: int) -> None:
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle

    def orphaned() -> None:  # the parent was killed: do not linger
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=orphaned, daemon=True).start()
    _load_in_worker(source)


class LocalRunner:
    """`n` worker processes on this machine, each loading the detector once.

    A worker that dies (killed, crashed) breaks the pool: a new one is made and the images that
    were in flight are tried again, at most MAX_TRIES times each (then an error record).
    """

    MAX_TRIES = 3

    def __init__(self, n: int) -> None:
        self.n = n

    def describe(self) -> str:
        return f"{self.n} local worker process{'es' if self.n != 1 else ''}"

    def map(self, source: DetectorSource, paths: list[str], png_dir: str | None) -> Iterator[dict]:
        import multiprocessing
        from collections import Counter, deque
        from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
        from concurrent.futures.process import BrokenProcessPool

        queue, tries, breaks = deque(paths), Counter[str](), 0
        context = multiprocessing.get_context("spawn")  # no fork of a process with threads
        while queue:
            pool = ProcessPoolExecutor(self.n, context, _init_local_worker, (source, os.getpid()))
            inflight: dict[Any, str] = {}
            broken: list[str] = []
            try:
                while (queue or inflight) and not broken:
                    while queue and len(inflight) < 4 * self.n:
                        path = queue.popleft()
                        inflight[pool.submit(_work, path, source.digest, png_dir)] = path
                    finished, _ = wait(inflight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        path = inflight.pop(future)
                        try:
                            record = future.result()
                        except BrokenProcessPool:
                            broken.append(path)
                            continue
                        breaks = 0
                        yield record
            finally:
                pool.shutdown(wait=not broken, cancel_futures=True)
            if broken:
                breaks += 1
                if breaks >= self.MAX_TRIES:
                    raise TemplaterError(
                        f"worker processes died {breaks} times in a row without finishing an image"
                    )
                for path in reversed(broken + list(inflight.values())):
                    tries[path] += 1
                    if tries[path] >= self.MAX_TRIES:
                        yield error_record(path, source.digest, "a worker died on it every try")
                    else:
                        queue.appendleft(path)


class _DetectorPlugin:
    """A dask worker plugin: loads the detector when a worker starts (also a restarted one)."""

    def __init__(self, source: DetectorSource) -> None:
        self.source = source
        self.name = f"templater-detector-{source.digest}"

    def setup(self, worker: Any) -> None:
        _load_in_worker(self.source)

    def teardown(self, worker: Any) -> None:
        pass


class DaskRunner:
    """dask.distributed: a scheduler at `address`, or a LocalCluster of `n` processes.

    The detector travels in a worker plugin (its bytes), so every worker, also one that joins or
    is restarted later, loads it once. Workers read the images from the paths; a task on a worker
    that dies is run again elsewhere by the scheduler.
    """

    def __init__(self, address: str | None, n: int) -> None:
        self.address, self.n = address, n

    def describe(self) -> str:
        return f"dask at {self.address}" if self.address else f"dask LocalCluster of {self.n}"

    def _client(self) -> tuple[Any, Any]:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError(
                "dask is not installed: pip install 'templater[collections]'"
            ) from None
        if self.address:
            try:
                return Client(self.address, timeout="30s"), None
            except OSError as exc:
                raise UsageError(f"cannot reach the dask scheduler {self.address}: {exc}") from None
        # ":0": the scheduler serves HTTP even without a dashboard, and 8787 may be taken
        cluster = LocalCluster(
            n_workers=self.n, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        return Client(cluster), cluster

    def map(self, source: DetectorSource, paths: list[str], png_dir: str | None) -> Iterator[dict]:
        from distributed import WorkerPlugin, as_completed
        from distributed.client import FutureCancelledError
        from distributed.scheduler import KilledWorker

        client, cluster = self._client()
        try:
            # made here so that importing this module needs no dask; cloudpickle sends it by value
            plugin_class = type("DetectorPlugin", (_DetectorPlugin, WorkerPlugin), {})
            client.register_plugin(plugin_class(source), name=f"templater-{source.digest}")
            window = max(16, 4 * sum(client.nthreads().values()))
            todo = iter(paths)
            futures = as_completed()
            owner: dict[str, str] = {}

            def submit_next() -> None:
                path = next(todo, None)
                if path is not None:
                    future = client.submit(_work, path, source.digest, png_dir, pure=False)
                    owner[future.key] = path
                    futures.add(future)

            for _ in range(window):
                submit_next()
            for future in futures:
                path = owner.pop(future.key)
                try:
                    record = future.result()
                except (KilledWorker, FutureCancelledError) as exc:
                    record = error_record(path, source.digest, f"the dask task failed: {exc}")
                future.release()
                yield record
                submit_next()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
