"""The pure-Python MTCNN program (templater.mtcnn_python_program): one file importing only math
whose find_faces gives the numpy reference cascade's boxes with float64 reference nets.

Two layers of checks: the pure cascade (templater/mtcnn_cascade_pure.py) against the numpy one
(templater/mtcnn_cascade.py) with the same nets, bit for bit; then the compiled program (the
Python target's nets plus that cascade) against the numpy cascade with float64 reference nets."""

from __future__ import annotations

import ast
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from templater import mtcnn_cascade as np_cascade
from templater import mtcnn_cascade_pure as pure

ROOT = Path(__file__).resolve().parent.parent


# -- the pieces of the pure cascade against the numpy cascade ----------------------------------
def test_to_float32_is_numpys_rounding():
    rng = np.random.default_rng(0)
    values = np.concatenate([
        rng.normal(size=2000),
        rng.uniform(-1, 1, 2000) * 1e-40,  # float32 subnormals
        (rng.integers(0, 256, 2000) - 127.5) * 0.0078125 + rng.normal(size=2000) * 1e-9,
        np.float32(rng.normal(size=500)).astype(np.float64)
        + np.spacing(np.float32(rng.normal(size=500))).astype(np.float64) / 2,  # ties
        [0.0, -0.0, 3.4028235e38, 3.5e38, -1e-46, 1.0000000596046448],
    ])
    with np.errstate(over="ignore"):
        want = values.astype(np.float32).astype(np.float64)
    got = np.array([pure.to_float32(float(v)) for v in values])
    assert np.array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize(
    "shape,size", [((7, 9), (24, 24)), ((50, 37), (24, 24)), ((61, 45), (17, 33)),
                   ((12, 100), (48, 7)), ((5, 5), (5, 5)), ((1, 3), (4, 2))])
def test_resize_is_the_numpy_resize_bit_for_bit(shape, size):
    rng = np.random.default_rng(sum(shape) + sum(size))
    image = rng.integers(0, 256, (*shape, 3)).astype(np.float64)
    image[0, 0] = rng.uniform(0, 255, 3)
    want = np_cascade.resize(image, *size)
    planes = [image[:, :, c].tolist() for c in range(3)]
    got = np.stack([np.array(p) for p in pure.resize(planes, *size)], axis=2)
    assert np.array_equal(got, want)
    assert np.array_equal(
        np.stack([np.array(p) for p in pure.normalise(pure.resize(planes, *size))], axis=2),
        np_cascade.normalise(want).astype(np.float64),
    )


def test_nms_keeps_what_numpy_keeps_with_tied_scores():
    rng = np.random.default_rng(3)
    for mode in ("union", "min"):
        for _ in range(20):
            xy = rng.integers(0, 40, (30, 2)).astype(np.float64)
            side = rng.integers(3, 20, (30, 1)).astype(np.float64)
            boxes = np.column_stack([xy, xy + side])
            scores = rng.integers(0, 4, 30) / 4.0  # many ties
            want = np_cascade.nms(boxes, scores, 0.5, mode).tolist()
            assert pure.nms(boxes.tolist(), scores.tolist(), 0.5, mode) == want


class _ListNets:
    """The pure cascade's interface over the numpy reference nets (lists in, lists out)."""

    def __init__(self, nets):
        self.nets = nets

    def pnet(self, level):
        prob, reg = self.nets.pnet(np.array(level, dtype=np.float32).transpose(1, 2, 0))
        return prob.tolist(), reg.tolist()

    def rnet(self, crops):
        batch = np.array(crops, dtype=np.float32).reshape(-1, 3, 24, 24).transpose(0, 2, 3, 1)
        prob, reg = self.nets.rnet(batch)
        return prob.tolist(), reg.tolist()

    def onet(self, crops):
        batch = np.array(crops, dtype=np.float32).reshape(-1, 3, 48, 48).transpose(0, 2, 3, 1)
        prob, reg, marks = self.nets.onet(batch)
        return prob.tolist(), reg.tolist(), marks.tolist()


@pytest.fixture(scope="module")
def reference_nets():
    from templater import mtcnn

    return mtcnn.ReferenceNets(np.float64)


def _face():
    """100 x 100 around the astronaut's face (the face runs off the top: crops are padded)."""
    from skimage import data

    return data.astronaut()[50:150, 140:240]


def _images():
    from skimage import data

    face = _face()
    return {
        "face": face,
        "face-gray": face.mean(axis=2),  # floats in [0, 255]
        "face-rgba": np.dstack([face, np.full(face.shape[:2], 128, np.uint8)]),
        "face-uint16": face.astype(np.uint16) * 257,
        "no-face": data.coffee()[100:180, 100:200],
    }


def _same(got, want, exact_scores=True):
    boxes, scores, marks = got
    ref_boxes, ref_scores, ref_marks = want
    assert np.array_equal(np.array(boxes, dtype=np.float64).reshape(-1, 4), ref_boxes)
    assert np.array_equal(np.array(marks, dtype=np.float64).reshape(-1, 5, 2), ref_marks)
    if exact_scores:
        assert np.array_equal(np.array(scores, dtype=np.float64), ref_scores)
    else:
        assert np.allclose(scores, ref_scores, rtol=0, atol=1e-12)


@pytest.mark.parametrize("min_face", [20, 40])
def test_pure_cascade_is_the_numpy_cascade_with_the_same_nets(reference_nets, min_face):
    """Same nets, so everything is bit for bit: boxes, scores and landmarks."""
    nets = _ListNets(reference_nets)
    found = 0
    for name, image in _images().items():
        want = np_cascade.find_faces(image, reference_nets, min_face=min_face)
        got = pure.find_faces(image, nets, min_face=min_face)
        _same(got, want)
        if image.dtype != np.uint16:
            _same(pure.find_faces(image.tolist(), nets, min_face=min_face), want)
        found += len(want[0])
        if name == "no-face":
            assert len(want[0]) == 0
    assert found >= 4  # the face in each of its four forms


def test_pure_cascade_refuses_bad_input_as_documented():
    nets = None  # never reached
    assert pure.find_faces([[0] * 15] * 40, nets, min_face=20) == ([], [], [])
    with pytest.raises(TypeError):
        pure.find_faces(np.zeros((40, 40), bool), nets)
    with pytest.raises(TypeError):
        pure.find_faces([[True] * 40] * 40, nets)
    with pytest.raises(TypeError):
        pure.find_faces([["a"] * 40] * 40, nets)
    for bad in ([[math.nan] * 40] * 40, [[256] * 40] * 40, [[-1] * 40] * 40,
                [[0] * 40] * 39 + [[0] * 39], [[[0, 0]] * 40] * 40, [], 7):
        with pytest.raises(ValueError):
            pure.find_faces(bad, nets)
    with pytest.raises(ValueError):
        pure.find_faces([[0] * 40] * 40, nets, min_face=5)


# -- the compiled program ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def program_path(tmp_path_factory):
    from templater.mtcnn_python_program import compile_mtcnn_python

    path = tmp_path_factory.mktemp("mtcnn_python") / "mtcnn_python.py"
    path.write_text(compile_mtcnn_python(), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def program(program_path):
    from templater import import_program

    return import_program(program_path)


def test_the_program_gives_the_reference_boxes(program, reference_nets):
    """The program's nets are the Python target's (float64, the reference's sum order; softmax's
    exp is e ** v): boxes and landmarks exact, scores within 1e-12 (measured: exact)."""
    for image in _images().values():
        want = np_cascade.find_faces(image, reference_nets, min_face=40)
        _same(program.find_faces(image, min_face=40), want, exact_scores=False)
    want = np_cascade.find_faces(_face(), reference_nets, min_face=30)
    assert len(want[0]) == 1
    _same(program.find_faces(_face().tolist(), min_face=30), want, exact_scores=False)


def test_the_program_refuses_bad_input(program):
    assert program.find_faces(np.zeros((15, 40, 3), np.uint8), min_face=20) == ([], [], [])
    with pytest.raises(TypeError):
        program.find_faces(np.zeros((40, 40), bool))
    with pytest.raises(ValueError):
        program.find_faces(np.full((40, 40), np.nan))


def test_the_file_imports_only_math(program_path):
    """Every line that could import (ast.parse of the 17 MB file takes 20 s; this is stricter:
    any line starting with import or from, at any depth, even inside a string)."""
    text = program_path.read_text(encoding="utf-8")
    lines = [line.strip() for line in text.splitlines()]
    imports = [line for line in lines if re.match(r"(import|from)\s", line)]
    assert imports == ["import math"]
    assert "__import__" not in text and "importlib" not in text
    ast.parse(pure_source())  # the cascade part parses on its own


def pure_source():
    from templater.mtcnn_python_program import cascade_source

    return cascade_source()


def test_the_file_runs_alone_in_an_isolated_interpreter(program_path, program, tmp_path):
    """examples/embed_mtcnn_python.py and the copied file under python -I -S (no site-packages:
    no numpy, no templater); every module they load is the standard library's."""
    import shutil

    face = _face()
    (tmp_path / "photo.ppm").write_bytes(b"P6\n# a comment\n100 100\n255\n" + face.tobytes())
    shutil.copy(program_path, tmp_path / "mtcnn_python.py")
    shutil.copy(ROOT / "examples" / "embed_mtcnn_python.py", tmp_path / "embed.py")
    runner = (
        "import sys; before = set(sys.modules); import runpy; "
        "sys.argv = ['embed.py', 'mtcnn_python.py', 'photo.ppm', '--min-face', '40']; "
        "runpy.run_path('embed.py', run_name='__main__'); "
        "new = {n.split('.')[0] for n in set(sys.modules) - before} - {'mtcnn_python'}; "
        "assert new <= set(sys.stdlib_module_names), new"
    )
    run = subprocess.run([sys.executable, "-I", "-S", "-c", runner], cwd=tmp_path,
                         capture_output=True, text=True, timeout=600, check=False)
    assert run.returncode == 0, run.stderr
    assert "s per megapixel" in run.stderr
    boxes, scores, _ = program.find_faces(face, min_face=40)
    assert len(boxes) == 1
    got = [[float(v) for v in line.split()[:5]] for line in run.stdout.splitlines()]
    assert got == [[*box, score] for box, score in zip(boxes, scores, strict=True)]


def test_compile_mtcnn_command_writes_the_same_bytes_each_time(program_path, tmp_path):
    from click.testing import CliRunner

    from templater.cli import main

    out = tmp_path / "again.py"
    result = CliRunner().invoke(
        main, ["compile-mtcnn", "--target", "python", "--models",
               str(ROOT / "generated" / "mtcnn"), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == program_path.read_bytes()  # ONNX files and model files alike


@pytest.mark.slow  # about 25 s of pure Python, plus the reference
def test_the_program_on_the_whole_astronaut(program, reference_nets):
    from skimage import data

    image = data.astronaut()
    want = np_cascade.find_faces(image, reference_nets, min_face=24)
    assert len(want[0]) == 1
    _same(program.find_faces(image, min_face=24), want, exact_scores=False)


def test_the_example_reads_netpbm_photos():
    import runpy

    example = runpy.run_path(str(ROOT / "examples" / "embed_mtcnn_python.py"))
    face = _face()
    rgb = example["read_netpbm"](b"P6\n100 100\n255\n" + face.tobytes())
    assert np.array_equal(np.array(rgb), face)
    gray16 = (face[:, :, 0].astype(np.uint16) * 257).astype(">u2")
    gray = example["read_netpbm"](b"P5 100 100 65535\n" + gray16.tobytes())
    assert np.array_equal(np.array(gray), gray16.astype(np.uint16) * (255.0 / 65535.0))
