"""templater detect: photos in, boxes out (text, JSON, a picture); bad input refused cleanly."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from templater.cli import main
from templater.data.faces import gray, photo
from templater.detect import read_image
from templater.scan import scan


@pytest.fixture(scope="module")
def files(tmp_path_factory, build_program, scan_net):
    folder = tmp_path_factory.mktemp("detect")
    program = build_program(scan_net, "numba")
    rgb = np.ascontiguousarray(__import__("skimage").data.astronaut()[40:200, 140:300])
    Image.fromarray(rgb).save(folder / "photo.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])).save(
        folder / "rgba.png"
    )
    Image.fromarray(rgb[:10, :10]).save(folder / "tiny.png")
    (folder / "text.png").write_text("not a picture", encoding="utf-8")
    scan_net.save(folder / "model.npz")
    return folder, program


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_reading_converts_colour_to_documented_gray(files):
    folder, _ = files
    img, rgb = read_image(folder / "photo.png")
    expected = gray(np.asarray(Image.open(folder / "photo.png")))
    assert img.dtype == np.float64 and img.shape == (160, 160) and rgb.shape == (160, 160, 3)
    assert np.array_equal(img, expected)
    assert np.array_equal(read_image(folder / "rgba.png")[0], img)  # opaque alpha: same photo


@pytest.mark.slow
def test_detect_prints_json_and_draws_the_boxes_of_the_program(files):
    folder, program = files
    out = folder / "boxes.png"
    result = _run("detect", program.__file__, str(folder / "photo.png"), "--json", "-o", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    img, _ = read_image(folder / "photo.png")
    expected = program.find_faces(img)
    assert len(expected) >= 1
    got = np.array([[b["row"], b["col"], b["size"], b["score"]] for b in data["boxes"]])
    assert np.array_equal(got, expected) and data["detector"]["kind"] == "program"
    with Image.open(out) as drawn:
        assert drawn.size == (160, 160) and drawn.mode == "RGB"
        pixels = np.asarray(drawn)
    assert (pixels[..., 1] > pixels[..., 0] + 100).any()  # green boxes drawn


def test_detect_with_a_model_runs_the_reference_scan(files):
    folder, _ = files
    result = _run("detect", str(folder / "model.npz"), str(folder / "photo.png"), "--json")
    assert result.exit_code == 0, result.output
    got = np.array(
        [[b["row"], b["col"], b["size"], b["score"]] for b in json.loads(result.stdout)["boxes"]]
    )
    from templater import load

    expected = scan(load(folder / "model.npz"), read_image(folder / "photo.png")[0])
    assert got.shape == expected.shape and np.allclose(got, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(
    "detector, image, words",
    [
        ("program", "text.png", "not an image file"),
        ("program", "tiny.png", "smaller than the 25x25 window"),
        ("program", "missing.png", "no such image file"),
        ("digits", "photo.png", "not a face program"),
        ("photo.png", "photo.png", "unknown model file type"),
    ],
)
def test_detect_refuses_bad_input_and_leaves_the_output_alone(files, detector, image, words):
    folder, program = files
    paths = {"program": program.__file__}
    if detector == "digits":
        from templater.golden import default_root

        paths["digits"] = str(default_root() / "digits" / "digits_python.py")
    out = folder / "kept.png"
    out.write_bytes(b"old picture")
    result = CliRunner().invoke(
        main,
        [
            "detect",
            paths.get(detector, str(folder / detector)),
            str(folder / image),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 2
    assert words in result.stderr and "Traceback" not in result.output
    assert out.read_bytes() == b"old picture"
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_astronaut_photo_reads_like_the_training_data(tmp_path):
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    assert np.array_equal(read_image(tmp_path / "a.png")[0], photo("astronaut"))
