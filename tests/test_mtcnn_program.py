"""The committed MTCNN detector program (generated/mtcnn/mtcnn_numba.py): one standalone file
whose find_faces gives the numpy reference cascade's boxes, and MTCNN through onnxruntime's."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from templater import import_program

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "generated" / "mtcnn" / "mtcnn_numba.py"

pytestmark = pytest.mark.slow  # compiling the three nets takes about 20-40 s of CPU


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The committed file, copied (its numba cache lands beside the copy)."""
    folder = tmp_path_factory.mktemp("mtcnn_program")
    shutil.copy(PROGRAM, folder / "mtcnn_numba.py")
    return import_program(folder / "mtcnn_numba.py")


@pytest.fixture(scope="module")
def reference_nets():
    from templater import mtcnn

    return mtcnn.ReferenceNets(np.float32)


def _photos():
    from skimage import data

    astronaut = data.astronaut()
    return {
        "astronaut": astronaut,
        "gray": data.camera(),
        "rgba": np.dstack([astronaut, np.full(astronaut.shape[:2], 255, np.uint8)]),
        "uint16": astronaut.astype(np.uint16) * 257,
        "coffee": data.coffee(),
    }


def test_find_faces_gives_the_reference_boxes(program, reference_nets):
    from templater import mtcnn

    found_any = False
    for name, image in _photos().items():
        boxes, scores, marks = program.find_faces(image, min_face=24)
        ref_boxes, ref_scores, ref_marks = mtcnn.detect(image, reference_nets, min_face=24)
        assert np.array_equal(boxes, ref_boxes), name
        assert np.allclose(scores, ref_scores, rtol=0, atol=1e-6), name
        assert np.allclose(marks, ref_marks, rtol=0, atol=1e-6), name
        found_any |= len(boxes) > 0
    assert found_any  # the astronaut's face at least


def test_the_numba_image_steps_and_nms_give_the_cascades_numbers(program):
    """The program's pyramid levels, crops and NMS (numba kernels) against mtcnn_cascade's numpy
    ones: the same bits (levels and crops in the nets' (channels, columns, rows) layout), the
    same boxes kept, on every kind of input the cascade takes."""
    from skimage import data

    from templater import mtcnn_cascade as cascade

    rng = np.random.default_rng(3)
    for image in (data.astronaut(), data.camera(), data.astronaut().astype(np.uint16) * 257):
        rgb = cascade.as_rgb(image)
        for rows, cols in ((300, 301), (17, 900), (1024, 1000), (12, 12), (7, 1)):
            expect = cascade.pyramid_level(rgb, rows, cols)
            assert np.array_equal(program.NETS.pyramid_level(rgb, rows, cols),
                                  expect.transpose(2, 1, 0)), (rows, cols)
        corner = np.column_stack([rng.integers(-60, 512, (200, 2)), rng.integers(0, 300, 200)])
        boxes = np.column_stack([corner[:, :2], corner[:, :2] + corner[:, 2:]]).astype(np.int64)
        for size in (24, 48):
            expect = cascade.resize_crops(rgb, boxes, size)
            got = program.NETS.resize_crops(rgb, boxes, size)
            assert np.array_equal(got, expect.transpose(0, 3, 2, 1)), size
    for trial in range(200):
        n = int(rng.integers(0, 50))
        corner = rng.integers(0, 100, (n, 2)).astype(float)
        boxes = np.hstack([corner, corner + rng.integers(-2, 40, (n, 2))])
        scores = rng.choice([0.6, 0.8, 0.9], n) if trial % 2 else rng.random(n)  # ties too
        for threshold, mode in ((0.5, "union"), (0.7, "union"), (0.7, "min")):
            with np.errstate(all="ignore"):  # boxes of zero area divide by zero
                expect = cascade.nms(boxes, scores, threshold, mode)
            assert np.array_equal(program.NETS.nms(boxes, scores, threshold, mode), expect)


def test_the_image_steps_skip_only_taps_that_add_nothing(program):
    """The numba levels and crops skip taps of weight 0 and taps on pixels outside the image: still
    the cascade's bits, on sizes that make such taps (an exact 2x shrink, unchanged and 3x sizes,
    clamped edges, strips of fewer than 8 rows), on float pixels of -0.0, and on crops partly or
    wholly outside the image on each side."""
    from templater import mtcnn_cascade as cascade

    rng = np.random.default_rng(5)
    colour = rng.integers(0, 256, (36, 50, 3), dtype=np.uint8)
    zeros = cascade.as_rgb(rng.choice([-0.0, 0.0, 0.5, 17.25, 255.0], (36, 50)))
    assert np.signbit(zeros).any()
    for rgb in (colour, zeros, cascade.as_rgb(colour[:, :, 0])):
        for rows, cols in ((18, 25), (36, 50), (108, 150), (9, 50), (5, 7), (37, 51)):
            expect = cascade.pyramid_level(rgb, rows, cols)
            assert np.array_equal(program.NETS.pyramid_level(rgb, rows, cols),
                                  expect.transpose(2, 1, 0)), (rows, cols)
        boxes = np.array([
            [1, 1, 48, 48], [-10, 5, 13, 52], [40, 30, 55, 45], [20, -30, 27, -23],
            [60, 5, 75, 20], [-30, 5, -15, 20], [10, 40, 25, 55], [45, 33, 52, 40],
        ], dtype=np.int64)
        for size in (24, 48):
            expect = cascade.resize_crops(rgb, boxes, size)
            got = program.NETS.resize_crops(rgb, boxes, size)
            assert np.array_equal(got, expect.transpose(0, 3, 2, 1)), size


def test_pnet_boxes_are_the_cascades_rows(program):
    """The program's pnet_boxes (numba) against mtcnn_cascade's: the same rows, row-major, on
    PNet's own output views and on plain float64 maps, with scores equal to the threshold, no
    hits and every cell a hit."""
    from templater import mtcnn_cascade as cascade

    rng = np.random.default_rng(7)
    level = rng.random((3, 61, 47), dtype=np.float32) - 0.5
    outputs = program.NETS.pnet(level)
    ties = rng.choice([0.5, 0.6, 0.7], (9, 13))
    maps = [(*outputs, 0.5 * 0.709**k) for k in range(4)] + [
        (ties, rng.standard_normal((4, 9, 13)), 1 / 3),
        (ties * 0, ties[None].repeat(4, 0), 2.0),
    ]
    for prob, reg, scale in maps:
        for threshold in (0.0, 0.6, float(np.median(prob)), 2.0):
            expect = cascade.pnet_boxes(prob, reg, scale, threshold)
            got = program.NETS.pnet_boxes(prob, reg, scale, threshold)
            assert got.dtype == expect.dtype and np.array_equal(got, expect), (scale, threshold)


def test_small_photos_give_no_boxes_and_bad_input_is_refused(program):
    boxes, scores, marks = program.find_faces(np.zeros((15, 40, 3), np.uint8), min_face=20)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and marks.shape == (0, 5, 2)
    with pytest.raises(TypeError):
        program.find_faces(np.zeros((40, 40), bool))
    with pytest.raises(ValueError):
        program.find_faces(np.full((40, 40), np.nan))


def test_the_file_is_standalone():
    """It imports only numpy, numba and the standard library (math, sys)."""
    import ast

    tree = ast.parse(PROGRAM.read_text(encoding="utf-8"))
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module)])
    }
    assert imported == {"math", "sys", "numpy", "numba"}  # sys: the cache module name


def test_embed_example_runs_the_copied_file_alone(tmp_path, program):
    """examples/embed_face_detector.py with only the copied program: no templater to import."""
    import subprocess
    import sys

    from skimage import data

    shutil.copy(PROGRAM, tmp_path / "mtcnn_numba.py")
    shutil.copy(ROOT / "examples" / "embed_face_detector.py", tmp_path / "embed_face_detector.py")
    image = data.astronaut()
    np.save(tmp_path / "photo.npy", image)
    runner = (
        "import runpy, sys; sys.modules['templater'] = None; "
        "sys.argv = ['embed_face_detector.py', 'mtcnn_numba.py', 'photo.npy', '--min-face', '24']; "
        "runpy.run_path('embed_face_detector.py', run_name='__main__')"
    )
    run = subprocess.run([sys.executable, "-I", "-c", runner], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr
    boxes, scores, _ = program.find_faces(image, min_face=24)
    got = np.array([[float(v) for v in line.split()[:5]] for line in run.stdout.splitlines()])
    assert np.array_equal(got.reshape(-1, 5), np.column_stack([boxes, scores]))


def test_detect_by_name_finds_the_astronaut_in_colour(tmp_path, program):
    from click.testing import CliRunner
    from PIL import Image
    from skimage import data

    from templater.cli import main

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    result = CliRunner().invoke(
        main, ["detect", "mtcnn", str(tmp_path / "astronaut.png"), "-o", str(tmp_path / "o.png")]
    )
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    boxes, _, _ = program.find_faces(data.astronaut(), min_face=24)
    assert len(lines) == len(boxes) >= 1
    with Image.open(tmp_path / "o.png") as drawn:
        assert drawn.size == (512, 512)


def test_the_same_faces_as_mtcnn_through_onnxruntime_on_every_labelled_photo(program):
    """#19: on every installed photo of the evaluation and tuning sets, the compiled detector
    finds as many faces as the same cascade over onnxruntime's nets, each matched at IoU >= 0.95
    with its score within 1e-4."""
    pytest.importorskip("onnxruntime")
    from templater import mtcnn
    from templater.data.eval import fetch
    from templater.errors import UsageError
    from templater.evaluate import iou

    nets = mtcnn.OnnxRuntimeNets()
    checked = 0
    for photo in fetch.photos():
        try:
            image = fetch.load_rgb(photo)
        except UsageError:  # its package is not installed
            continue
        boxes, scores, _ = program.find_faces(image, min_face=24)
        expect, expect_scores, _ = mtcnn.detect(image, nets, min_face=24)
        assert len(boxes) == len(expect), photo.name
        for box, score in zip(boxes, scores, strict=True):
            overlap = iou(box, expect)
            k = int(np.argmax(overlap))
            assert overlap[k] >= 0.95 and abs(score - expect_scores[k]) <= 1e-4, photo.name
        checked += 1
    if checked == 0:
        pytest.skip("no labelled photo installed")
