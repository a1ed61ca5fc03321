"""float32 programs (`--dtype float32`) against the float32 reference, and against float64."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from templater import compile as compile_network
from templater import import_program, scan, verify
from templater.errors import UsageError
from templater.literals import literal
from templater.network import Dense, Head, Network, Normalization

# |score32 - score64| <= DECISION_TOLERANCE * (1 + |score64|), so decisions of a float32 program
# agree with the float64 reference except for scores that close to the threshold. Measured worst:
# 2.9e-4 for the committed face model on the astronaut's 110,292 windows (scales 1, 0.75, 0.5,
# 0.32; no decision flipped), 1.8e-5 on random inputs, 1.7e-6 for bench's random 625-h-1 nets.
DECISION_TOLERANCE = 1e-3
# exp/tanh: numba's expf/tanhf and numpy's float32 SIMD kernels may differ in the last bits.
TRANSCENDENTAL_ATOL = verify.ATOL32
TRANSCENDENTAL_RTOL = verify.RTOL32


@pytest.fixture(scope="session")
def build32(program_dir):
    """build32(net, layout) -> the imported float32 Numba program, cached per network."""
    cache = {}

    def build(net, layout="auto"):
        key = (net.digest(), layout)
        if key not in cache:
            name = "_".join(layout) if isinstance(layout, tuple) else layout
            path = program_dir / f"p32_{key[0]}_{name}.py"
            path.write_text(compile_network(net, "numba", layout, dtype="float32"), "utf-8")
            cache[key] = import_program(path)
        return cache[key]

    return build


@pytest.fixture(scope="module")
def face(committed_face, build32):
    net, _ = committed_face
    return net, build32(net)


@pytest.fixture(scope="module")
def piecewise_net():
    """Four layers, every piecewise-linear activation, window normalisation, 3 classes."""
    rng = np.random.default_rng(32)
    sizes = (36, 12, 10, 8, 3)
    acts = (
        {"name": "leaky_relu", "alpha": 0.1},
        {"name": "clip", "alpha": -0.3, "beta": 0.7},
        {"name": "hard_sigmoid", "alpha": 0.3, "beta": 0.45},
        {"name": "identity"},
    )
    from templater.network import Activation

    layers = []
    for k, act in enumerate(acts):
        w = rng.normal(0, 1 / np.sqrt(sizes[k]), (sizes[k], sizes[k + 1]))
        w[0, 0] = 0.0
        w[1, 0] = 1e-50  # a weight float32 rounds to zero
        layers.append(Dense(w, rng.normal(0, 0.1, sizes[k + 1]), Activation(**act)))
    return Network(
        36,
        tuple(layers),
        head=Head("multiclass"),
        normalization=Normalization("window", 0.01),
        input_shape=(6, 6),
    )


def test_float32_literals_are_exact_float32_values():
    assert literal(0.1, "float32") == repr(float(np.float32(0.1))) == "0.10000000149011612"
    assert literal(-0.0, "float32") == "-0.0"
    assert literal(1e-50, "float32") == "0.0"
    assert literal(0.1) == "0.1"  # float64 unchanged


def test_python_target_refuses_float32(scan_net):
    with pytest.raises(UsageError, match="no float32"):
        compile_network(scan_net, "python", dtype="float32")
    with pytest.raises(UsageError, match="dtype"):
        compile_network(scan_net, "numba", dtype="float16")


def test_float32_source_says_so_and_writes_only_float32_values(scan_net):
    source = compile_network(scan_net, "numba", dtype="float32")
    assert "network as a Numba program in float32" in source
    assert '@_jit("float32(float32[::1])")' in source
    assert "dtype=np.float32)" in source
    model_part = source[: source.index("def _parallel")]  # the scanner's code stays float64
    pattern = r"(?<![\w.])-?\d+\.\d+(?:e-?\d+)?"
    weights = [float(v) for v in re.findall(pattern, model_part)]
    assert len(weights) > 625 * 8
    assert all(float(np.float32(v)) == v for v in weights)
    # every scalar literal in the kernel bodies is typed: a bare float would widen to float64
    kernels = source[source.index("def _kernel") : source.index("def _parallel")]
    code = re.sub(r"#.*", "", re.sub(r"np\.float32\([^()]*\)", "", kernels))
    assert "np.float32(0.0)" in kernels and not re.search(r"\d\.\d", code)


def test_reference_rounds_once_and_stays_float32(piecewise_net):
    x = np.random.default_rng(1).random((50, 36))
    out = piecewise_net.forward(x, dtype=np.float32)
    assert out.dtype == np.float32
    # float32 arithmetic, not float64 rounded at the end; float64 is what it was
    assert np.array_equal(piecewise_net.forward(x), piecewise_net.forward(x, dtype="float64"))
    assert not np.array_equal(out, piecewise_net.forward(x).astype(np.float32))
    with pytest.raises(UsageError):
        piecewise_net.forward(x, dtype=np.int32)


@pytest.mark.slow
def test_face_program_is_the_float32_reference_bit_for_bit(face):
    net, program = face
    x = np.random.default_rng(2).random((203, 625))
    ref = net.forward(x, dtype=np.float32)[:, 0]
    singles = np.array([program.score(row) for row in x], dtype=np.float32)
    assert np.array_equal(singles, ref)
    for n in (1, 3, 4, 5, 203):
        batch = program.score_batch(x[:n])
        assert batch.dtype == np.float32
        assert np.array_equal(batch, ref[:n])
    # float64 inputs are converted to float32, exactly as the reference does
    assert program.score(x[0].astype(np.float32)) == program.score(x[0])
    assert [program.decide(row) for row in x[:50]] == list(net.decide(x[:50], dtype=np.float32))


@pytest.mark.slow
def test_face_decisions_agree_with_float64_except_near_the_threshold(face):
    net, program = face
    rng = np.random.default_rng(3)
    # random windows and ones scaled towards the threshold, so some lie close to it
    x = np.concatenate([rng.random((2000, 625)), rng.normal(0.5, 0.3, (2000, 625))])
    s64 = net.score(x)
    s32 = program.score_batch(x).astype(np.float64)
    assert np.max(np.abs(s32 - s64) / (1 + np.abs(s64))) < DECISION_TOLERANCE
    thr = net.head.threshold
    far = np.abs(s64 - thr) > DECISION_TOLERANCE * (1 + abs(thr))
    assert far.mean() > 0.9
    assert np.array_equal((s32 > float(np.float32(thr)))[far], (s64 > thr)[far])


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [None, 0.1, -2.0])
def test_find_faces_is_the_float32_reference_scan(face, threshold):
    from skimage import color, data

    net, program = face
    image = color.rgb2gray(data.astronaut())[:200, 120:320]  # the astronaut's face
    kwargs = {"scales": (0.8, 0.5, 0.4, 0.32, 0.25), "stride": 2, "threshold": threshold}
    boxes = program.find_faces(image, **kwargs)
    reference = scan.scan(net, image, exact=True, dtype=np.float32, **kwargs)
    assert len(reference) >= 1
    assert np.array_equal(boxes, reference)


def test_float32_reference_scan_needs_exact(scan_net):
    with pytest.raises(UsageError, match="exact"):
        scan.scan(scan_net, np.zeros((30, 30)), dtype=np.float32)


@pytest.mark.slow
def test_several_layers_every_piecewise_activation_bit_for_bit(piecewise_net, build32):
    program = build32(piecewise_net, ("table", "unrolled", "table", "unrolled"))
    x = np.random.default_rng(4).normal(0, 1, (37, 36))
    ref = piecewise_net.forward(x, dtype=np.float32)
    singles = np.array([program.scores(row) for row in x])
    assert singles.dtype == np.float32
    assert np.array_equal(singles, ref)
    assert np.array_equal(program.score_batch(x), ref)
    assert [program.predict(row) for row in x] == list(piecewise_net.predict(x, dtype="float32"))


@pytest.mark.slow
def test_exp_and_tanh_within_the_stated_tolerance(build32):
    rng = np.random.default_rng(5)
    net = Network(
        20,
        (
            Dense(rng.normal(0, 0.5, (20, 9)), rng.normal(0, 0.5, 9), "sigmoid"),
            Dense(rng.normal(0, 1.0, (9, 7)), rng.normal(0, 0.5, 7), "tanh"),
            Dense(rng.normal(0, 1.0, (7, 4)), rng.normal(0, 0.5, 4), "softmax"),
        ),
        head=Head("multiclass"),
    )
    program = build32(net, "unrolled")
    x = rng.normal(0, 2, (64, 20))
    ref = net.forward(x, dtype=np.float32)
    got = program.score_batch(x)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, rtol=TRANSCENDENTAL_RTOL, atol=TRANSCENDENTAL_ATOL)


@pytest.mark.slow
def test_verify_judges_a_float32_program_against_the_float32_reference(face, tmp_path):
    net, module = face
    report = verify.verify(net, module.__file__, data="random", count=200)
    assert report.passed and report.max_abs_error == 0.0 and "float32" in report.tolerance.reason
    # a hand-edited literal is caught and the input named
    source = Path(module.__file__).read_text()
    literal = repr(float(np.float32(net.layers[1].bias[0])))
    edited = tmp_path / "edited32.py"
    assert literal in source
    edited.write_text(source.replace(literal, "0.5"))
    report = verify.verify(net, edited, data="random", count=50)
    assert not report.passed and report.findings and report.findings[0].index == 0
