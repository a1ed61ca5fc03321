"""Differential tests: every compiled program against the numpy reference forward pass.

Held to `templater.verify.tolerance_for`: exact (bitwise, -0.0 == 0.0) for piecewise-linear
activations, any layout, both targets; within RTOL/ATOL where exp/tanh are involved or the
Python target's window normalisation takes `v ** 0.5` for sqrt.
"""

from __future__ import annotations

import ast
import itertools
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import templater
from templater import Activation, Dense, Head, Network, Normalization
from templater.lower import MAX_TERMS, choose_layouts
from templater.verify import tolerance_for

PIECEWISE = ("identity", "relu", "leaky_relu", "step", "clip", "hard_sigmoid")
SMOOTH = ("sigmoid", "tanh")

# Weights include exact zeros, signed zeros and subnormals (BAD_INPUTS #4: accepted, exact).
SPECIAL = (0.0, -0.0, 5e-324, -5e-324, 1e-310, 2.2250738585072014e-308, 1.0, -1.0)


@st.composite
def weights(draw, shape):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    w = rng.uniform(-2.0, 2.0, size=shape)
    mask = rng.random(shape) < draw(st.sampled_from((0.0, 0.1, 0.5)))
    w[mask] = rng.choice(SPECIAL, size=int(mask.sum()))
    return w


@st.composite
def networks(draw, activations=PIECEWISE + SMOOTH, max_width=64, max_layers=4, max_macs=None):
    n_layers = draw(st.integers(1, max_layers))
    sizes = [draw(st.integers(1, max_width)) for _ in range(n_layers + 1)]
    if max_macs is not None:
        while sum(a * b for a, b in itertools.pairwise(sizes)) > max_macs:
            sizes = [max(1, s // 2) for s in sizes]
    head_kind = draw(st.sampled_from(("binary", "multiclass", "regression")))
    if head_kind == "binary":
        sizes[-1] = 1
    elif head_kind == "multiclass":
        sizes[-1] = max(2, sizes[-1])
    layers = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        choices = activations
        if head_kind == "multiclass" and i == n_layers - 1 and any(a in SMOOTH for a in choices):
            choices = (*activations, "softmax")
        name = draw(st.sampled_from(choices))
        alpha = beta = None
        if name == "leaky_relu":
            alpha = draw(st.sampled_from((0.01, 0.2, -0.5)))
        elif name == "clip":
            alpha, beta = draw(st.sampled_from(((0.0, 6.0), (-1.0, 1.0), (0.5, 0.5))))
        elif name == "hard_sigmoid":
            alpha, beta = draw(st.sampled_from(((0.2, 0.5), (1 / 6, 0.5))))
        layers.append(
            Dense(
                draw(weights((n_in, n_out))),
                draw(weights((n_out,))),
                Activation(name, alpha, beta),
            )
        )
    threshold = draw(st.sampled_from((0.0, 0.5, -0.25))) if head_kind == "binary" else None
    norm = draw(st.sampled_from(("none", "window")))
    return Network(sizes[0], tuple(layers), Head(head_kind, threshold), Normalization(norm))


def inputs_for(net: Network, seed: int, count: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(count, net.input_size))
    x[0] = 0.0  # a flat window: the normalisation's eps path
    return x


def run(module, net: Network, x: np.ndarray, target: str) -> np.ndarray:
    rows = x.tolist() if target == "python" else x
    out = np.array(module.score_batch(rows), dtype=np.float64)
    return out.reshape(len(x), net.n_outputs)


def assert_matches(net: Network, module, target: str, seed: int = 0) -> None:
    x = inputs_for(net, seed)
    ref = net.forward(x)
    got = run(module, net, x, target)
    tolerance = tolerance_for(net, target)
    assert tolerance.allows(got, ref).all(), (tolerance.reason, np.abs(got - ref).max())
    rtol, atol = tolerance.rtol, tolerance.atol
    first = x[0].tolist() if target == "python" else x[0]
    if net.head.kind == "binary":
        # Decisions agree wherever the reference score is not within the tolerance of it.
        clear = np.abs(ref[:, 0] - net.head.threshold) > atol + rtol * np.abs(ref[:, 0])
        decided = np.array([module.decide(r.tolist() if target == "python" else r) for r in x])
        np.testing.assert_array_equal(decided[clear], (ref[:, 0] > net.head.threshold)[clear])
        assert module.score(first) == pytest.approx(ref[0, 0], rel=rtol, abs=atol)
    elif net.head.kind == "multiclass":
        scores = np.asarray(module.scores(first))
        assert int(module.predict_index(first)) == int(np.argmax(scores))


SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@settings(max_examples=60, **SETTINGS)
@given(
    net=networks(), layout=st.sampled_from(("unrolled", "table", "auto")), seed=st.integers(0, 99)
)
def test_python_target_matches_reference(net, layout, seed, program_dir):
    from templater import import_program

    path = program_dir / f"hyp_{net.digest()}_{layout}.py"
    path.write_text(templater.compile(net, "python", layout), encoding="utf-8")
    assert_matches(net, import_program(path), "python", seed)


# Numba compiles each program (~0.3-2 s): few examples, and unrolled ones kept small because
# numba pays milliseconds per unrolled multiply-add.
@pytest.mark.slow
@settings(max_examples=6, **SETTINGS)
@given(net=networks(max_width=48), seed=st.integers(0, 99))
def test_numba_table_layout_matches_reference(net, seed, build_program):
    assert_matches(net, build_program(net, "numba", "table"), "numba", seed)


@pytest.mark.slow
@settings(max_examples=5, **SETTINGS)
@given(net=networks(max_width=12, max_layers=3, max_macs=200), seed=st.integers(0, 99))
def test_numba_unrolled_layout_matches_reference(net, seed, build_program):
    assert_matches(net, build_program(net, "numba", "unrolled"), "numba", seed)


def face_sized(hidden: int = 32, seed: int = 1) -> Network:
    rng = np.random.default_rng(seed)
    return Network(
        625,
        (
            Dense(rng.normal(0, 0.05, (625, hidden)), rng.normal(0, 0.1, hidden), "relu"),
            Dense(rng.normal(0, 0.3, (hidden, 1)), np.zeros(1), "identity"),
        ),
        Head("binary", 0.1),
        Normalization("window"),
        (25, 25),
    )


def test_auto_layout_unrolls_small_layers_and_tables_big_ones():
    net = face_sized()
    assert choose_layouts(net, "auto", templater.targets.NUMBA.unroll_budget) == (
        "table",
        "unrolled",
    )
    # The pure-Python target unrolls everything that CPython compiles quickly.
    assert choose_layouts(net, "auto", templater.targets.PYTHON.unroll_budget) == (
        "unrolled",
        "unrolled",
    )


@pytest.mark.slow
def test_face_sized_numba_program_is_exact_and_checks_its_input(build_program):
    net = face_sized()
    module = build_program(net, "numba", "auto")
    assert_matches(net, module, "numba")
    x = inputs_for(net, 3)[1]
    # BAD_INPUTS #17: wrong length, 2-D, a dict, strings, NaN -> ValueError/TypeError.
    with pytest.raises(ValueError, match="625"):
        module.score(x[:-1])
    with pytest.raises(ValueError, match="shape"):
        module.score(x.reshape(25, 25))
    with pytest.raises(TypeError):
        module.score({"a": 1})
    with pytest.raises(TypeError):
        module.score(np.array(["1.0"] * 625))
    bad = x.copy()
    bad[7] = np.nan
    with pytest.raises(ValueError, match="finite"):
        module.score(bad)
    with pytest.raises(ValueError, match="finite"):
        module.score_batch(np.vstack([x, bad]))
    # Lists and float32 arrays are converted explicitly, not refused.
    x32 = x.astype(np.float32)
    assert module.score(x32) == net.score(x32.astype(np.float64))
    assert module.score(x.tolist()) == net.score(x)
    # Read-only, strided and too-long inputs leave the one-call fast path for the full checks.
    frozen = x.copy()
    frozen.setflags(write=False)
    assert module.score(frozen) == net.score(x)
    assert module.score(np.repeat(x, 2)[::2]) == net.score(x)
    with pytest.raises(ValueError, match="625"):
        module.score(np.concatenate([x, x[:1]]))
    assert type(module.decide(x)) is bool and module.decide(x) == net.decide(x)


def test_python_program_checks_its_input(build_program):
    net = face_sized(hidden=4)
    module = build_program(net, "python", "unrolled")
    x = inputs_for(net, 4)[1].tolist()
    with pytest.raises(ValueError, match="625"):
        module.score(x[:-1])
    with pytest.raises(TypeError):
        module.score({"a": 1})
    with pytest.raises(TypeError):
        module.score("1" * 625)
    with pytest.raises(TypeError):
        module.score(["1.0"] * 625)
    with pytest.raises(ValueError, match="finite"):
        module.score([float("nan"), *x[1:]])
    with pytest.raises(TypeError):  # a 2-D array: rows are not numbers
        module.score([x] * 625)


def test_every_weight_is_written_once_as_its_repr():
    rng = np.random.default_rng(5)
    w = rng.normal(size=(20, 3))
    w[0, 0] = 5e-324  # subnormal: must round-trip exactly
    net = Network(20, (Dense(w, rng.normal(size=3), "relu"), Dense(np.ones((3, 1)), [0.0])))
    # Numba programs have two kernels (one row, a block of rows); they share one copy.
    for target, layout in itertools.product(("python", "numba"), ("unrolled", "table", "auto")):
        source = templater.compile(net, target, layout)
        for value in w.ravel():
            assert source.count(repr(abs(float(value)))) == 1, (target, layout, value)


def test_unrolled_sums_are_bounded_and_one_term_per_line():
    net = face_sized(hidden=2)
    source = templater.compile(net, "python", "unrolled")
    tree = ast.parse(source)
    biggest = max(
        len(_flatten_add(node.value)) for node in ast.walk(tree) if isinstance(node, ast.Assign)
    )
    assert biggest <= MAX_TERMS
    terms = [ln.strip() for ln in source.splitlines() if ln.strip()[:2] in ("+ ", "- ")]
    assert len(terms) >= 625 * 2 and all(term.count(" * ") == 1 for term in terms)


def _flatten_add(node):
    if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
        return [*_flatten_add(node.left), node.right]
    return [node]


def test_python_program_has_no_imports_and_every_relu_is_an_if():
    net = face_sized(hidden=3)
    source = templater.compile(net, "python", "unrolled")
    tree = ast.parse(source)
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert len(re.findall(r"if l1_s\d > 0\.0:\n +l1_h\d = l1_s\d\n +else:", source)) == 3
    assert "return l2_h0" in source


def test_passes_drop_zero_terms_and_dead_neurons():
    rng = np.random.default_rng(2)
    w1 = rng.normal(size=(6, 4))
    w1[2, :] = 0.0  # input 2 unused
    w2 = rng.normal(size=(4, 1))
    w2[1, 0] = 0.0  # hidden neuron 1 feeds nothing: dead
    net = Network(6, (Dense(w1, rng.normal(size=4), "relu"), Dense(w2, [0.0])))
    source = templater.compile(net, "python", "unrolled")
    code = source[source.index("def _kernel") :]  # LAYERS still names every unit of the layer
    assert "x[2]" not in code
    assert "l1_s1" not in code and "l1_h1" not in code
    module_source = templater.compile(net, "python", "unrolled", passes=())
    assert "l1_h1" in module_source[module_source.index("def _kernel") :]
    namespace: dict = {}
    exec(compile(source, "<prog>", "exec"), namespace)
    x = rng.normal(size=6)
    assert namespace["score"](x.tolist()) == net.score(x)


def test_names_from_the_model_never_change_the_program_structure():
    """BAD_INPUTS #8: hostile names reach the file only through repr()."""
    evil = 'x"""\n\rimport os; os.system("echo pwned")\x00\u202e\u0430 if True:' + "é" * 10_000
    rng = np.random.default_rng(3)

    def net(name, labels):
        return Network(
            4,
            (
                Dense(rng.normal(size=(4, 3)), np.zeros(3), "relu", name=name),
                Dense(np.ones((3, 2)), np.zeros(2), "identity", name=name),
            ),
            Head("multiclass", labels=labels),
            name=name,
        )

    rng = np.random.default_rng(3)
    plain = templater.compile(net("", ("a", "b")), "python", "unrolled")
    rng = np.random.default_rng(3)
    hostile = templater.compile(net(evil, (evil, "print(1)")), "python", "unrolled")
    assert _shape(plain) == _shape(hostile)
    namespace: dict = {}
    exec(compile(hostile, "<prog>", "exec"), namespace)
    assert namespace["MODEL_NAME"] == evil and namespace["LABELS"][0] == evil


def _shape(source: str) -> str:
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = "S"
    return ast.dump(tree)
