"""templater demo: the main job finds the astronaut's face with the committed MTCNN program and
draws it; the comparison runs on the labelled photos that are installed."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image

from templater.cli import main


@pytest.mark.slow  # compiles the committed MTCNN program (or loads it from numba's cache)
def test_demo_finds_the_astronaut_and_draws_it(tmp_path):
    out = tmp_path / "faces.png"
    result = CliRunner().invoke(main, ["demo", "-o", str(out), "--no-compare", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert len(report["faces"]) == 1  # the astronaut's face, nothing else
    x0, y0, x1, y1, score = report["faces"][0]
    assert 170 < x0 < 190 and 50 < y0 < 70 and 255 < x1 < 280 and 165 < y1 < 185 and score > 0.99
    with Image.open(out) as picture:
        assert picture.size == (512, 512)


def test_demo_refuses_an_output_that_is_not_png(tmp_path):
    result = CliRunner().invoke(main, ["demo", "-o", str(tmp_path / "faces.jpg")])
    assert result.exit_code == 2 and "PNG" in result.output


def test_evaluation_leaves_out_photos_whose_package_is_missing(monkeypatch):
    import numpy as np

    from templater import evaluate
    from templater.data.eval import fetch
    from templater.face_detectors import FaceDetector

    monkeypatch.setattr(fetch, "status", lambda photo: "missing" if photo.package == "opencv-doc"
                        else "ok")
    nothing = FaceDetector("none", "finds nothing", lambda rgb: (np.empty((0, 4)), np.empty(0)))
    report = evaluate.run([nothing], "eval", 24, available_only=True)
    left_out = {p.name for p in fetch.photos("eval") if p.package == "opencv-doc"}
    assert set(report["missing_photos"]) == left_out and left_out
    assert report["photos"] == len(fetch.photos("eval")) - len(left_out)
    assert "left out" in evaluate.table(report)
