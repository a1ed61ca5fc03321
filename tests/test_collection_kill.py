"""Collections killed half-way: SIGKILL to a worker (the run recovers by itself) and to the whole
`templater detect` process (a second run with --resume finishes it). Every image exactly once.

Each run is a fresh `templater detect` process over 200 photos and 5 broken files.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import templater
from templater.bench_collection import BROKEN, make_photos
from templater.collection import find_images
from templater.golden import default_root
from templater.results import read_results

pytestmark = pytest.mark.slow
psutil = pytest.importorskip("psutil")

PROGRAM = default_root() / "face" / "face_numba.py"
ROOT = Path(templater.__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kill")
    make_photos(folder, 200, 50_000, seed=2, broken=True)
    return folder


def _start(folder: Path, out: Path, *options: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", "from templater.cli import main; main()", "detect", str(PROGRAM),
         str(folder), "--out", str(out), *options],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,  # its own process group: the test can clean up everything
    )


def _records_so_far(out: Path) -> int:
    if out.suffix == ".parquet":
        parts = out.with_name(out.name + ".parts")
        return len(list(parts.glob("*.parquet"))) if parts.exists() else 0
    return out.read_bytes().count(b"\n") if out.exists() else 0


def _wait_for_records(proc: subprocess.Popen, out: Path, at_least: int = 1) -> None:
    deadline = time.monotonic() + 240
    while _records_so_far(out) < at_least:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no records in 240 s"
        time.sleep(0.05)


def _workers(proc: subprocess.Popen) -> list:
    """The worker processes: spawned children that are not multiprocessing's resource tracker."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = [
            p for p in psutil.Process(proc.pid).children(recursive=True)
            if "resource_tracker" not in " ".join(p.cmdline())
        ]
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("no worker processes")


def _finish(proc: subprocess.Popen) -> str:
    try:
        stdout, stderr = proc.communicate(timeout=400)
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, stderr
    return stdout


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _every_image_once(folder: Path, out: Path) -> None:
    records = read_results(out)
    counts = collections.Counter(r["path"] for r in records)
    assert sorted(counts) == find_images([str(folder)])
    assert set(counts.values()) == {1}, [p for p, n in counts.items() if n > 1]
    errors = sorted(Path(r["path"]).name for r in records if r["error"])
    assert errors == sorted(BROKEN)


@pytest.mark.parametrize("options", [("--workers", "2"), ("--dask", "local", "--workers", "2")])
def test_a_killed_worker_loses_nothing_and_repeats_nothing(photos, tmp_path, options):
    out = tmp_path / "results.jsonl"
    proc = _start(photos, out, *options)
    try:
        _wait_for_records(proc, out, 64)  # a third of the way: the first chunk is written
        victim = _workers(proc)[0]
        victim.send_signal(signal.SIGKILL)
        stdout = _finish(proc)
    finally:
        _kill_group(proc)
    assert "205 images" in stdout and "5 errors" in stdout
    _every_image_once(photos, out)


@pytest.mark.parametrize(
    "name, options",
    [("results.jsonl", ("--workers", "2")),
     ("results.parquet", ("--dask", "local", "--workers", "2"))],
)
def test_a_killed_run_resumes_with_every_image_once(photos, tmp_path, name, options):
    out = tmp_path / name
    first = _start(photos, out, *options)
    try:
        _wait_for_records(first, out, 100 if out.suffix == ".jsonl" else 2)  # about half-way
        workers = _workers(first)
        first.send_signal(signal.SIGKILL)  # the process that writes, not its group
        first.communicate(timeout=30)  # reaps it and closes its pipes
        done_before = _records_so_far(out)
        gone = psutil.wait_procs(workers, timeout=30)[1]  # workers notice and exit by themselves
        assert not gone, f"orphaned workers: {gone}"
    finally:
        _kill_group(first)
    assert done_before >= 1
    second = _start(photos, out, *options, "--resume")
    stdout = _finish(second)
    assert "skipped (already in the results)" in stdout
    _every_image_once(photos, out)
    if out.suffix == ".jsonl":  # the second run appended only what the first had not written
        lines = out.read_text(encoding="utf-8").splitlines()
        assert all(json.loads(line)["detector"] for line in lines)


def test_ctrl_c_keeps_what_came_back_and_resume_finishes(photos, tmp_path):
    out = tmp_path / "results.jsonl"
    first = _start(photos, out, "--workers", "2")
    try:
        _wait_for_records(first, out)
        os.killpg(first.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        _, stderr = first.communicate(timeout=120)
    finally:
        _kill_group(first)
    assert first.returncode == 130 and "run the same command with --resume" in stderr, stderr
    assert "Traceback" not in stderr, stderr
    stdout = _finish(_start(photos, out, "--workers", "2", "--resume"))
    assert "skipped (already in the results)" in stdout
    _every_image_once(photos, out)
