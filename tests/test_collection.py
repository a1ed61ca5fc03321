"""Collections: the same records from a serial loop, local workers and a dask LocalCluster; error
records for unreadable files; resuming skips what RESULTS holds; progress without a terminal."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from templater import collection, collection_worker
from templater.bench_collection import BROKEN, make_photos, write_broken
from templater.cli import main
from templater.collection_runners import DaskRunner, LocalRunner
from templater.detect import read_image
from templater.errors import UsageError
from templater.golden import default_root
from templater.results import open_results, read_results

PROGRAM = default_root() / "face" / "face_numba.py"
N_PHOTOS = 200


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """200 photos of 0.04-0.06 MP with pasted faces, and the five broken files."""
    folder = tmp_path_factory.mktemp("collection")
    manifest = make_photos(folder, N_PHOTOS, 50_000, seed=1, broken=True)
    return folder, manifest


@pytest.fixture(scope="module")
def source():
    return collection.detector_source(PROGRAM)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def serial_records(photos, source, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial") / "serial.jsonl"
    summary = collection.run([str(photos[0])], source, out, workers=0)
    assert summary.done == N_PHOTOS + len(BROKEN) and summary.errors == len(BROKEN)
    return comparable(read_results(out))


def some_photos(photos, *indexes):
    found = collection.find_images([str(photos[0] / "set0")])
    return [Path(found[i]) for i in indexes]


def comparable(records):
    """Records sorted by path, without the timings (the one field that may differ)."""
    return sorted(({k: v for k, v in r.items() if k != "seconds"} for r in records),
                  key=lambda r: r["path"])


def test_find_images_takes_files_folders_and_globs_once(photos, tmp_path):
    folder = photos[0]
    everything = collection.find_images([str(folder)])
    assert len(everything) == N_PHOTOS + len(BROKEN)  # faces.json is not an image
    assert everything == sorted(everything) and all(os.path.isabs(p) for p in everything)
    one = str(folder / "set1" / "photo00005.png")
    twice = collection.find_images([one, str(folder / "set1"), str(folder / "set*" / "*.png")])
    assert twice.count(one) == 1
    assert len(twice) == N_PHOTOS // 2 + N_PHOTOS // 8  # all PNGs, plus set1's JPEGs
    assert collection.find_images([str(folder / "**" / "*.jpg")]) == sorted(
        p for p in everything if p.endswith(".jpg")
    )
    (tmp_path / ".hidden.png").write_bytes(b"")
    assert collection.find_images([str(tmp_path)]) == []
    with pytest.raises(UsageError, match="no such file or folder"):
        collection.find_images([str(tmp_path / "missing")])
    with pytest.raises(UsageError, match="no file matches"):
        collection.find_images([str(tmp_path / "*.png")])


def test_serial_records_are_the_programs_boxes_and_name_the_broken_files(
    photos, serial_records
):
    folder, manifest = photos
    from templater.programs import import_program

    program = import_program(PROGRAM)
    images = [r for r in serial_records if r["error"] is None]
    assert len(images) == N_PHOTOS
    for r in images[::40]:  # each record is exactly what the program finds in that file
        gray, _ = read_image(r["path"])
        expected = program.find_faces(gray)
        got = np.array([[b["row"], b["col"], b["size"], b["score"]] for b in r["boxes"]])
        assert np.array_equal(got.reshape(-1, 4), expected)
        assert (r["height"], r["width"]) == gray.shape and r["faces"] == len(expected)
        assert r["sha256"] == collection.file_sha256(r["path"])
        assert r["detector"] == collection.detector_source(PROGRAM).digest
    errors = {Path(r["path"]).name: r["error"] for r in serial_records if r["error"]}
    assert sorted(errors) == sorted(BROKEN)
    assert "truncated or corrupt" in errors["truncated.jpg"]
    assert "not an image" in errors["not_an_image.png"] and "not an image" in errors["empty.jpg"]
    assert "more than 50,000,000" in errors["too_large.png"]
    assert "smaller than the 25x25 window" in errors["tiny.png"]
    # the pasted faces are found: a box overlapping a pasted face by IoU >= 0.4
    found = pasted = 0
    for r in images:
        faces = manifest[str(Path(r["path"]).relative_to(folder))]
        pasted += len(faces)
        found += sum(any(_iou(f, b) >= 0.4 for b in r["boxes"]) for f in faces)
    assert pasted > N_PHOTOS and found >= 0.3 * pasted, (found, pasted)


def _iou(face, box):
    r, c, s = face
    dr = max(0.0, min(r + s, box["row"] + box["size"]) - max(r, box["row"]))
    dc = max(0.0, min(c + s, box["col"] + box["size"]) - max(c, box["col"]))
    inter = dr * dc
    return inter / (s * s + box["size"] ** 2 - inter)


def test_local_workers_write_the_same_records_as_parquet(photos, source, serial_records, tmp_path):
    out = tmp_path / "local.parquet"
    summary = collection.run([str(photos[0])], source, out, workers=2)
    assert summary.runner == "2 local worker processes" and summary.errors == len(BROKEN)
    assert comparable(read_results(out)) == serial_records
    assert not (tmp_path / "local.parquet.parts").exists()  # the parts were merged
    import pyarrow.parquet as pq

    table = pq.read_table(out)  # one row per box plus one per image without a box
    assert table.num_rows == sum(max(1, r["faces"]) for r in serial_records)


def test_dask_cluster_writes_the_same_records_loading_the_program_once_per_worker(
    photos, source, serial_records, cluster, tmp_path
):
    from distributed import Client

    out = tmp_path / "dask.jsonl"
    summary = collection.run(
        [str(photos[0])], source, out, scheduler=cluster.scheduler_address, workers=2
    )
    assert summary.runner.startswith("dask at tcp://")
    assert comparable(read_results(out)) == serial_records
    with Client(cluster) as client:
        loads = client.run(lambda: collection_worker.load_calls)
        pids = client.run(os.getpid)
    assert len(loads) == 2 and set(loads.values()) == {1}, loads
    assert os.getpid() not in pids.values()


def test_dask_workers_that_cannot_see_the_program_compile_the_text_they_get(
    photos, serial_records, cluster, tmp_path
):
    from distributed import Client

    from templater.programs import import_program

    copy = tmp_path / "face_numba.py"
    copy.write_bytes(PROGRAM.read_bytes())
    threshold = import_program(PROGRAM).THRESHOLD  # the default, given: another digest
    moved = collection.detector_source(copy, threshold=threshold)
    copy.unlink()  # no worker can read it there now
    out = tmp_path / "r.jsonl"
    folder = photos[0] / "set0"
    collection.run([str(folder)], moved, out, scheduler=cluster.scheduler_address)
    expected = [dict(r, detector=moved.digest) for r in serial_records
                if r["path"].startswith(str(folder))]
    assert comparable(read_results(out)) == expected
    with Client(cluster) as client:
        files = client.run(lambda: [m.__file__ for m in __import__("sys").modules.values()
                                    if getattr(m, "__name__", "") == "face_numba"])
    where = str(collection_worker.PROGRAM_CACHE / moved.digest / "face_numba.py")
    assert all(where in found for found in files.values()), files


def test_dask_workers_get_the_program_as_text(tmp_path, monkeypatch, source):
    """A worker that cannot see the client's program file compiles the bytes it was sent."""
    moved = collection.DetectorSource(
        source.kind, source.name, source.data, source.settings, str(tmp_path / "gone.py")
    )
    monkeypatch.setattr(collection_worker, "PROGRAM_CACHE", tmp_path / "cache")
    path = collection_worker._file_on_disk(moved)
    assert path == tmp_path / "cache" / moved.digest / "face_numba.py"
    assert path.read_bytes() == source.data
    assert collection_worker._file_on_disk(moved) == path  # a second worker finds it there


def test_a_worker_that_cannot_load_the_detector_stops_the_run(photos, tmp_path):
    bad = tmp_path / "not_a_face_program.py"
    bad.write_text("INPUT_SHAPE = (3, 3)\n", encoding="utf-8")
    source = collection.detector_source(bad)
    out = tmp_path / "r.jsonl"
    with pytest.raises(collection.TemplaterError, match="not a face program"):
        list(LocalRunner(1).map(source, [str(some_photos(photos, 0)[0])], None))
    with pytest.raises(UsageError, match="not a face program"):
        collection.run([str(photos[0] / "set0")], source, out, workers=0)


def test_resume_skips_what_results_hold_and_cuts_a_torn_line(photos, source, tmp_path):
    folder = photos[0] / "set2"
    out = tmp_path / "r.jsonl"
    first = collection.run([str(folder)], source, out, workers=0)
    lines = out.read_bytes().splitlines(keepends=True)
    assert first.done == len(lines) == N_PHOTOS // 4
    # a kill in the middle of a chunk: 20 whole records and half of the 21st
    out.write_bytes(b"".join(lines[:20]) + lines[20][: len(lines[20]) // 2])
    with pytest.raises(UsageError, match="already exists: pass --resume"):
        collection.run([str(folder)], source, out, workers=0)
    again = collection.run([str(folder)], source, out, workers=0, resume=True)
    assert again.skipped == 20 and again.done == len(lines) - 20
    records = read_results(out)
    assert sorted(r["path"] for r in records) == collection.find_images([str(folder)])
    assert comparable(records) == comparable(json.loads(line) for line in lines)
    done = collection.run([str(folder)], source, out, workers=0, resume=True)
    assert done.done == 0 and done.skipped == len(lines)
    other = collection.detector_source(PROGRAM, threshold=20.0)
    with pytest.raises(UsageError, match=r"from detector \w+, not "):
        collection.run([str(folder)], other, out, workers=0, resume=True)


def test_resume_redoes_an_image_whose_content_changed(photos, source, tmp_path):
    folder = tmp_path / "few"
    folder.mkdir()
    a, b, c = some_photos(photos, 0, 1, 2)
    for photo in (a, b):
        (folder / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "r.jsonl"
    collection.run([str(folder)], source, out, workers=0)
    (folder / b.name).write_bytes(c.read_bytes())
    again = collection.run([str(folder)], source, out, workers=0, resume=True)
    assert again.skipped == 1 and again.done == 1


def test_parquet_resume_merges_the_parts_of_an_interrupted_run(photos, source, tmp_path):
    folder = photos[0] / "set3"
    out = tmp_path / "r.parquet"
    writer, _ = open_results(out, source.digest, resume=False)
    collection.load(source)
    images = collection.find_images([str(folder)])
    for path in images[:30]:
        writer.add(collection.detect_file(path, source.digest))
    writer.flush()  # a part file written, then the run is killed before merging:
    os.close(writer.fd)  # its lock goes with it
    assert not out.exists() and len(list((tmp_path / "r.parquet.parts").iterdir())) == 1
    again = collection.run([str(folder)], source, out, workers=0, resume=True)
    assert again.skipped == 30 and again.done == len(images) - 30
    assert sorted(r["path"] for r in read_results(out)) == images


@pytest.mark.parametrize("name", ["r.jsonl", "r.parquet"])
def test_a_second_run_on_the_same_results_is_refused_while_the_first_writes(
    source, tmp_path, name
):
    writer, _ = open_results(tmp_path / name, source.digest, resume=False)
    try:
        with pytest.raises(UsageError, match="another run is writing"):
            open_results(tmp_path / name, source.digest, resume=True)
    finally:
        writer.close()
    assert list(tmp_path.iterdir()) == []  # nothing written: nothing left behind


def test_permission_denied_becomes_an_error_record(photos, source, tmp_path, monkeypatch):
    image = tmp_path / "locked.png"
    image.write_bytes(some_photos(photos, 1)[0].read_bytes())

    def refuse(path):
        raise PermissionError(13, "Permission denied", path)

    collection.load(source)
    if os.geteuid() != 0:  # root reads anything: there, stand in for the refusal
        image.chmod(0)
    else:
        monkeypatch.setattr(collection_worker, "file_sha256", refuse)
    record = collection.detect_file(str(image), source.digest)
    assert record["error"].endswith("cannot read: Permission denied") and record["faces"] == 0


def test_progress_without_a_terminal_prints_rate_and_eta_lines():
    stream = io.StringIO()
    bar = collection.Progress(3, stream, interval=0.0)
    for faces in (1, 0, 2):
        bar.update({"faces": faces, "error": None if faces else "x"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in stream.getvalue()
    assert lines[-1].startswith("3/3 images 100.0%") and "images/s" in lines[-1]
    assert "ETA 00:00" in lines[-1] and "3 faces" in lines[-1] and "1 errors" in lines[-1]


def test_cli_collection_with_pictures_and_a_summary(photos, tmp_path):
    out, pictures = tmp_path / "r.jsonl", tmp_path / "pictures"
    args = ["detect", str(PROGRAM), str(photos[0] / "set0"), str(photos[0] / "broken"),
            "--out", str(out), "--workers", "0", "--png", str(pictures)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = read_results(out)
    with_faces = [r for r in records if r["faces"]]
    assert len(records) == N_PHOTOS // 4 + len(BROKEN) and with_faces
    assert f"{len(records)} images (in this process)" in result.stdout
    assert f"{sum(r['faces'] for r in records)} faces, 5 errors" in result.stdout
    assert "images/s" in result.stderr and "ETA" in result.stderr
    assert len(list(pictures.glob("*.png"))) == len(with_faces)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 2 and "--resume" in again.stderr


@pytest.mark.parametrize(
    "extra, words",
    [
        ((), "needs --out RESULTS"),
        (("--out", "r.jsonl", "-o", "x.png"), "-o and --json are for one image"),
        (("--out", "r.jsonl", "--dask", "local", "--scheduler", "tcp://127.0.0.1:1"),
         "not both"),
    ],
)
def test_cli_refuses_option_mixes(photos, tmp_path, monkeypatch, extra, words):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["detect", str(PROGRAM), str(photos[0] / "set0"), *extra]
    )
    assert result.exit_code == 2 and words in result.stderr
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_cli_dask_local_runs_a_local_cluster(photos, tmp_path):
    out = tmp_path / "r.jsonl"
    folder = tmp_path / "two"
    folder.mkdir()
    for photo in some_photos(photos, 0, 1):
        (folder / photo.name).write_bytes(photo.read_bytes())
    write_broken(folder / "broken")
    result = CliRunner().invoke(
        main, ["detect", str(PROGRAM), str(folder), "--out", str(out), "--dask", "local",
               "--workers", "2"], catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert "(dask LocalCluster of 2)" in result.stdout
    records = read_results(out)
    assert len(records) == 7 and sum(r["error"] is not None for r in records) == 5


def test_dask_runner_without_distributed_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(UsageError, match=r"templater\[collections\]"):
        DaskRunner(None, 1)._client()


def test_bench_rows_time_each_runner_over_the_same_photos(tmp_path):
    from templater import bench_collection

    rows = bench_collection.rows(tmp_path, images=6, pixels=5_000, local_workers=(1,),
                                 dask_workers=0)
    assert [(r["runner"], r["workers"]) for r in rows] == [("serial loop", 1),
                                                            ("local workers", 1)]
    for r in rows:
        assert r["images"] == 6 and r["seconds"] > 0 and 0 < r["busy"] <= 1
        # seconds are rounded to 1 ms: allow that rounding in the rate
        low, high = 6 / (r["seconds"] + 0.0005), 6 / max(r["seconds"] - 0.0005, 1e-9)
        assert low * 0.99 <= r["images_per_second"] <= high * 1.01
    dask = dict(rows[1], runner="dask", images_per_second=rows[1]["images_per_second"] / 2)
    assert bench_collection.overhead([*rows, dask])["images_per_second"] == pytest.approx(1.0)
    assert "dask overhead against local workers" in bench_collection.table([*rows, dask])
