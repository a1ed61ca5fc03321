"""Hardening: no command writes over its input, every read and scan is bounded, both targets
take the same inputs, multi-class programs answer with labels, messages from below are ours."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import templater
from templater.cli import main
from templater.errors import TooLargeError, UsageError
from templater.network import Activation, Dense, Head, Network

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def load_source(source: str, path: Path):
    path.write_text(source, encoding="utf-8")
    return templater.import_program(path)


@pytest.fixture
def files(tmp_path):
    """A model, a second model, a face program, a colour photo: copies to write over."""
    model = Path(shutil.copy(GENERATED / "face" / "model.npz", tmp_path / "m.npz"))
    other = Path(shutil.copy(GENERATED / "digits" / "model.npz", tmp_path / "b.npz"))
    program = Path(shutil.copy(GENERATED / "face" / "face_python.py", tmp_path / "prog.py"))
    from PIL import Image

    photo = tmp_path / "img.png"
    pixels = (np.random.default_rng(0).random((40, 40, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(photo)
    return {p.name: p for p in (model, other, program, photo)}


# -- outputs never overwrite inputs, and carry the extension of what is written ---------------
def assert_refused(result, files, *needles):
    assert result.exit_code == 2, result.output
    assert result.output.startswith("templater: error: "), result.output
    assert any(n in result.output for n in needles), result.output


def snapshot(files):
    return {name: path.read_bytes() for name, path in files.items()}


def test_compile_refuses_its_model_as_output(files, tmp_path):
    before = snapshot(files)
    m = files["m.npz"]
    assert_refused(invoke("compile", m, "-o", m), files, "written as PY")
    link = tmp_path / "link.py"
    link.symlink_to(m)
    assert_refused(invoke("compile", m, "-o", link), files, "also an input")
    os.link(m, tmp_path / "hard.py")
    assert_refused(invoke("compile", m, "-o", tmp_path / "hard.py"), files, "also an input")
    assert snapshot(files) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*files, "link.py", "hard.py"])


def test_detect_refuses_its_program_or_photo_as_output(files, tmp_path):
    before = snapshot(files)
    prog, img = files["prog.py"], files["img.png"]
    assert_refused(invoke("detect", prog, img, "-o", prog), files, "written as PNG")
    assert_refused(invoke("detect", prog, img, "-o", img), files, "also an input")
    assert_refused(invoke("detect", prog, img, "-o", tmp_path / "x.jpg"), files, "written as PNG")
    assert snapshot(files) == before
    assert not (tmp_path / "x.jpg").exists()


def test_diff_refuses_a_model_as_its_picture(files):
    before = snapshot(files)
    a, b = files["m.npz"], files["b.npz"]
    assert_refused(invoke("diff", a, b, "--png", a), files, "written as PNG")
    link = a.parent / "a.png"
    link.symlink_to(a)
    assert_refused(invoke("diff", a, b, "--png", link), files, "also an input")
    assert snapshot(files) == before


def test_import_bench_demo_check_their_extensions(files, tmp_path):
    m = files["m.npz"]
    assert_refused(invoke("import", m, "-o", m), files, "also an input")
    assert_refused(invoke("import", m, "-o", tmp_path / "x.onnx"), files, "written as NPZ")
    assert_refused(invoke("bench", "--json", tmp_path / "x.txt"), files, "written as JSON")
    assert_refused(invoke("demo", "-o", tmp_path / "x.jpg"), files, "written as PNG")


# -- bounded reads and work ---------------------------------------------------------------------
def test_diff_of_a_link_to_dev_zero_is_refused_at_once(tmp_path):
    (tmp_path / "zero.py").symlink_to("/dev/zero")
    done = subprocess.run(
        [sys.executable, "-c", "from templater.cli import main; main()", "diff", "zero.py",
         str(GENERATED / "digits" / "digits_python.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr


def test_program_and_model_reads_are_bounded(tmp_path):
    from templater.fileio import MAX_PROGRAM_BYTES, read_program_text
    from templater.modelfile import load
    from templater.verify import read_program

    big = tmp_path / "big.py"
    with big.open("wb") as handle:  # sparse: no disk used
        handle.truncate(MAX_PROGRAM_BYTES + 1)
    with pytest.raises(TooLargeError, match="limited"):
        read_program(big)
    with pytest.raises(UsageError, match="not a regular file"):
        load("/dev/zero")
    with pytest.raises(UsageError, match="not a regular file"):
        read_program_text(tmp_path)


def face_net(hidden: int = 3, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    return Network(
        625,
        (Dense(rng.normal(size=(625, hidden)) * 0.05, np.zeros(hidden), Activation("relu")),
         Dense(rng.normal(size=(hidden, 1)), np.zeros(1))),
        Head("binary", threshold=0.0),
        input_shape=(25, 25),
    )


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail (rather than hang) when the block runs longer than `seconds`."""

    def expired(signum, frame):
        raise AssertionError(f"still running after {seconds} s: the work is not bounded")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_python_find_faces_refuses_a_pyramid_over_its_budget(tmp_path):
    module = load_source(templater.compile(face_net(), "python"), tmp_path / "f_python.py")
    img = np.random.default_rng(0).random((60, 60)).tolist()
    with deadline(20), pytest.raises(ValueError, match="pixels"):
        module.find_faces(img, scales=[100.0])  # ran for over 11 minutes
    with deadline(20), pytest.raises(ValueError, match="MAX_SCAN_WINDOWS"):
        module.find_faces(img, scales=[8.0] * 12)  # each level allowed, their sum not
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="overlap"):
            module.find_faces(img, scales=[1.0], overlap=bad)
    assert isinstance(module.find_faces(img, scales=[0.5]), list)


def test_python_target_limit(tmp_path):
    from templater.compiler import MAX_PYTHON_PARAMETERS

    n = MAX_PYTHON_PARAMETERS // 626 + 1
    layers = (Dense(np.zeros((625, n)), np.zeros(n)), Dense(np.zeros((n, 1)), np.zeros(1)))
    net = Network(625, layers)
    assert net.n_parameters > MAX_PYTHON_PARAMETERS
    with pytest.raises(TooLargeError, match="pure-Python"):
        templater.compile(net, "python")
    result = invoke("compile", *_saved(net, tmp_path), "--target", "python")
    assert result.exit_code == 2 and "pure-Python target is limited" in result.output


def _saved(net: Network, tmp_path: Path) -> list[Path]:
    path = tmp_path / "wide.npz"
    net.save(path)
    return [path]


# -- the same input rules in both targets -------------------------------------------------------
BAD_ARRAYS = {
    "complex": np.full(625, 0.5 + 1j),
    "bool": np.ones(625, dtype=bool),
    "object": np.full(625, 0.5, dtype=object),
    "strings": np.full(625, "0.5"),
}


def python_program(tmp_path, net=None):
    return load_source(templater.compile(net or face_net(), "python"), tmp_path / "p_python.py")


@pytest.mark.parametrize("kind", sorted(BAD_ARRAYS))
def test_python_target_refuses_what_numba_refuses(tmp_path, kind):
    module = python_program(tmp_path)
    with pytest.raises(TypeError):
        module.score(BAD_ARRAYS[kind])
    with pytest.raises(TypeError):
        module.score_batch(BAD_ARRAYS[kind][None, :])


def test_python_target_refuses_complex_and_bool_elements(tmp_path):
    module = python_program(tmp_path)
    x = [0.5] * 625
    for bad in (np.complex128(0.5 + 2j), np.bool_(True), True, 1j):
        with pytest.raises(TypeError, match="real number"):
            module.score([bad, *x[1:]])
    assert module.score([np.float32(0.5), np.int64(1), *x[2:]]) == pytest.approx(
        face_net().score(np.array([0.5, 1.0, *x[2:]]))
    )
    img = np.random.default_rng(0).random((30, 30))
    with pytest.raises(TypeError):
        module.find_faces(img.astype(complex))
    with pytest.raises(TypeError):
        module.find_faces(img.tolist(), scales=[np.complex128(1.0)])


def overflowing_net() -> Network:
    return Network(
        4, (Dense(np.full((4, 2), 1e12), np.zeros(2), Activation("relu")),
            Dense(np.full((2, 1), 1e12), np.zeros(1))), Head("binary", threshold=0.0),
    )


def test_python_target_overflow_is_an_error(tmp_path):
    module = python_program(tmp_path, overflowing_net())
    with pytest.raises(ValueError, match="overflow"):
        module.score([1e300, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="overflow"):
        module.score_batch([[1e300, 1.0, 1.0, 1.0]])
    assert module.score([0.0, 0.0, 0.0, 0.0]) == 0.0


@pytest.mark.slow
def test_numba_target_same_rules_and_overflow(tmp_path):
    numba_face = templater.import_program(shutil.copy(GENERATED / "face" / "face_numba.py",
                                                      tmp_path / "face_numba.py"))
    for kind, bad in BAD_ARRAYS.items():
        with pytest.raises(TypeError):
            numba_face.score(bad)
        with pytest.raises(TypeError, match="dtype"):
            numba_face.score_batch(bad[None, :])
        assert kind
    x = [0.5] * 625
    for bad in (True, np.bool_(True), 1j):  # a list's elements, as in the Python program
        with pytest.raises(TypeError, match="real numbers"):
            numba_face.score([bad, *x[1:]])
    assert numba_face.score([np.float32(0.5), np.int64(1), *x[2:]]) == numba_face.score(
        np.array([0.5, 1.0, *x[2:]])
    )
    for bad in ([], [[]]):  # numba's own "cannot compute fingerprint of empty list" before
        with pytest.raises(ValueError, match="expected an array of shape"):
            numba_face.score(bad)
    img = np.random.default_rng(0).random((60, 60))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="overlap"):
            numba_face.find_faces(img, overlap=bad)
    with pytest.raises(ValueError, match="MAX_SCAN_WINDOWS"):
        numba_face.find_faces(img, scales=[100.0] * 30, stride=1)
    with pytest.raises(TypeError, match="real number"):
        numba_face.find_faces(img, scales=[np.complex128(1.0)])
    module = load_source(templater.compile(overflowing_net(), "numba"), tmp_path / "o_numba.py")
    with pytest.raises(ValueError, match="overflow"):
        module.score(np.array([1e300, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="overflow"):
        module.score_batch(np.array([[1e300, 1.0, 1.0, 1.0]]))
    assert module.score(np.zeros(4)) == 0.0


# -- labels ---------------------------------------------------------------------------------------
def sklearn_program(tmp_path, labels, target="python"):
    from sklearn.neural_network import MLPClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 5))
    y = np.array(labels)[np.digitize(x[:, 0], np.linspace(-1, 1, len(labels) - 1))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning
        clf = MLPClassifier((6,), max_iter=300, random_state=0).fit(x, y)
    net = templater.from_sklearn(clf)
    source = templater.compile(net, target)
    return clf, x, source, load_source(source, tmp_path / f"sk_{target}.py")


def test_multiclass_predict_returns_the_label(tmp_path):
    clf, x, source, program = sklearn_program(tmp_path, [10, 20, 30])
    predicted = [program.predict(r) for r in x.tolist()]
    assert predicted == clf.predict(x).tolist()  # 30, not 2
    assert [program.LABELS[program.predict_index(r)] for r in x.tolist()] == predicted
    docstring = source.split('"""')[1]
    assert "score(x)" not in docstring and "predict(x)" in docstring


def test_binary_class_names_are_kept(tmp_path):
    clf, x, source, program = sklearn_program(tmp_path, ["ham", "spam"])
    assert program.LABELS == ("ham", "spam")
    assert [program.predict(r) for r in x.tolist()] == clf.predict(x).tolist()
    assert "predict(x) for the class name" in source.split('"""')[1]


# -- messages from below --------------------------------------------------------------------------
def test_decompression_bomb_warning_is_our_error(tmp_path):
    from PIL import Image

    from templater.detect import read_image

    path = tmp_path / "bomb.png"
    Image.new("L", (10_000, 9_500)).save(path)  # 95 M pixels: above Pillow's warning limit
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UsageError, match="decompression bomb"):
            read_image(path)


# -- demo --retrain -------------------------------------------------------------------------------
def test_demo_retrain_never_overwrites(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "face_model.npz").write_bytes(b"mine")
    result = invoke("demo", "--retrain", "--retrain-dir", folder, "-o", tmp_path / "p.png")
    assert_refused(result, {}, "never overwrites")
    assert (folder / "face_model.npz").read_bytes() == b"mine"
    assert not (tmp_path / "p.png").exists()

