"""Exact passes from interval bounds: what they prove, and that no output changes."""

from __future__ import annotations

import ast
import types

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import templater
from templater.bounds import compile_bounded, domain_for, pre_activation_bounds
from templater.compiler import program_of
from templater.network import Dense, Head, Network, Normalization
from templater.neuron_coverage import coverage_of
from templater.verify import ulp_distance

ROWS = 10_000


def _module(source: str) -> types.ModuleType:
    module = types.ModuleType("bounded_program")
    exec(compile(source, "bounded_program.py", "exec"), module.__dict__)
    return module


def _kernel_tests(source: str) -> set[str]:
    """The names tested by the `if`s of the kernel."""
    tree = ast.parse(source)
    kernel = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_kernel")
    return {
        n.test.left.id for n in ast.walk(kernel)
        if isinstance(n, ast.If) and isinstance(n.test, ast.Compare)
        and isinstance(n.test.left, ast.Name)
    }


def _with_decided(
    rng: np.random.Generator, n_in: int, widths: tuple[int, ...], low: float, high: float,
    head: str,
) -> Network:
    """A random ReLU network whose first layer has neuron 0 provably dead on [low, high] and
    neuron 1 provably always active (bias beyond what the weights can reach)."""
    layers = []
    fan_in = n_in
    for k, width in enumerate(widths):
        w = rng.normal(size=(fan_in, width))
        b = rng.normal(size=width)
        if k == 0:
            reach = np.abs(w).sum(axis=0) * max(abs(low), abs(high))
            b[0], b[1] = -reach[0] - 1.0, reach[1] + 1.0
        layers.append(Dense(w, b, "relu"))
        fan_in = width
    out = 1 if head != "multiclass" else 3
    layers.append(Dense(rng.normal(size=(fan_in, out)), rng.normal(size=out), "identity"))
    h = Head("binary", threshold=0.25) if head == "binary" else Head(head)
    return Network(input_size=n_in, layers=tuple(layers), head=h)


def _inside(rng: np.random.Generator, n: int, low: float, high: float) -> np.ndarray:
    """ROWS inputs in [low, high]: uniform, plus the corners the bounds are taken at."""
    x = rng.uniform(low, high, size=(ROWS, n))
    x[: ROWS // 10] = np.where(rng.random((ROWS // 10, n)) < 0.5, low, high)
    return x


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_in=st.integers(2, 7),
    widths=st.lists(st.integers(2, 6), min_size=1, max_size=2).map(tuple),
    box=st.sampled_from([(0.0, 1.0), (-1.0, 1.0), (-3.5, 0.25), (2.0, 2.0)]),
    head=st.sampled_from(["binary", "regression", "multiclass"]),
)
def test_provable_neurons_lose_their_if_and_outputs_stay_exact(seed, n_in, widths, box, head):
    low, high = box
    rng = np.random.default_rng(seed)
    net = _with_decided(rng, n_in, widths, low, high, head)
    source, report = compile_bounded(net, low, high)
    assert (1, 0) in report.dead and (1, 1) in report.linear
    width = widths[0]
    from templater.lower import neuron_name

    tested = _kernel_tests(source)
    for j in (0, 1):
        assert neuron_name(1, "s", j, width) not in tested
    dead_h = neuron_name(1, "h", 0, width)
    # its outgoing terms are gone too: no code names it (the LAYERS literal still lists the
    # layer's units, as data)
    import ast

    names = {n.id for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Name)}
    assert dead_h not in names
    x = _inside(rng, n_in, low, high)
    program = _module(source)
    got = np.asarray(program.score_batch(x.tolist()), dtype=np.float64)
    want = np.asarray(net.forward(x), dtype=np.float64)
    want = want[:, 0] if want.shape[1] == 1 else want
    assert got.shape == want.shape
    assert np.all(ulp_distance(got, want) == 0)  # bit for bit (-0.0 == 0.0)


def test_a_neuron_dead_only_on_data_keeps_its_if(tmp_path):
    # s = x0 - x1 - 0.5 is never > 0 when x0 <= x1 (the data) but is on [0, 1]^2 (x0=1, x1=0).
    w1 = np.array([[1.0, 0.5], [-1.0, 0.5]])
    net = Network(
        input_size=2,
        layers=(Dense(w1, np.array([-0.5, 0.1]), "relu"),
                Dense(np.array([[1.0], [1.0]]), np.zeros(1), "identity")),
        head=Head("regression"),
    )
    rng = np.random.default_rng(0)
    data = np.sort(rng.uniform(0, 1, size=(200, 2)), axis=1)
    np.save(tmp_path / "data.npy", data)
    model = tmp_path / "m.npz"
    net.save(model)
    cov = coverage_of(model, str(tmp_path / "data.npy"))
    assert cov.layers[0].dead == (0,)
    source, report = compile_bounded(net, 0.0, 1.0)
    assert report.dead == [] and report.linear == [(1, 1)]
    assert "l1_s0" in _kernel_tests(source)


def test_bounds_are_sound_on_the_face_model():
    net = templater.load("generated/face/model.npz")
    domain = domain_for(net, 0.0, 1.0)
    bounds = pre_activation_bounds(program_of(net, "python", "unrolled"), domain)
    x = np.random.default_rng(1).uniform(0, 1, size=(300, 625))
    layer = net.layers[0]
    s = net.normalization.apply(x) @ layer.weights + layer.bias
    for j in range(layer.n_outputs):
        lo, hi = bounds[f"l1_s{j:02d}"]
        assert lo <= s[:, j].min() and s[:, j].max() <= hi


def _window_net(rng: np.random.Generator, n: int) -> Network:
    w = rng.normal(size=(n, 4)) * 0.1
    reach = np.abs(w).sum(axis=0) * np.sqrt(n) * 1.01
    b = rng.normal(size=4)
    b[0], b[1] = -reach[0] - 0.1, reach[1] + 0.1
    return Network(
        input_size=n,
        layers=(Dense(w, b, "relu"), Dense(rng.normal(size=(4, 1)), np.zeros(1), "identity")),
        head=Head("binary", threshold=0.0),
        normalization=Normalization("window", 0.05),
    )


@pytest.mark.parametrize("target", ["python", pytest.param("numba", marks=pytest.mark.slow)])
def test_window_normalisation_bounds_the_inputs(target, tmp_path):
    """Any finite window normalises into |xn| <= sqrt(n): the bound program equals the plain one
    (which verify holds to the reference) bit for bit."""
    rng = np.random.default_rng(3)
    net = _window_net(rng, 36)
    source, report = compile_bounded(net, -1e6, 1e6, target, layout="unrolled")
    assert report.dead == [(1, 0)] and report.linear == [(1, 1)]
    plain = templater.compile(net, target, "unrolled")
    x = np.concatenate([rng.uniform(0, 1, (ROWS, 36)), rng.normal(0, 1e3, (100, 36))])
    if target == "numba":
        from templater.programs import import_program

        (tmp_path / "bounded.py").write_text(source)
        (tmp_path / "plain.py").write_text(plain)
        got = import_program(tmp_path / "bounded.py").score_batch(x)
        want = import_program(tmp_path / "plain.py").score_batch(x)
    else:
        got = np.asarray(_module(source).score_batch(x.tolist()))
        want = np.asarray(_module(plain).score_batch(x.tolist()))
    assert np.all(ulp_distance(np.asarray(got), np.asarray(want)) == 0)


def test_the_header_and_an_empty_range():
    rng = np.random.default_rng(5)
    net = _with_decided(rng, 3, (4,), 0.0, 1.0, "regression")
    source, report = compile_bounded(net, 0.0, 1.0)
    dead = len(report.dead)
    assert dead >= 1 and f"removed {dead} neuron(s) proven never active (layer 1: {dead})" in (
        source
    )
    assert ast.get_docstring(ast.parse(source)).count("Exact passes over inputs in [0.0, 1.0]")
    with pytest.raises(templater.UsageError, match="finite LO <= HI"):
        compile_bounded(net, 1.0, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numba_programs_keep_the_reference_bit_for_bit(dtype, tmp_path):
    """The bounds are taken in the program's float type: float32 programs prove on float32."""
    from templater.programs import import_program

    rng = np.random.default_rng(7)
    net = _with_decided(rng, 5, (6, 4), -1.0, 1.0, "binary")
    source, report = compile_bounded(net, -1.0, 1.0, "numba", "unrolled", dtype)
    assert (1, 0) in report.dead and (1, 1) in report.linear
    path = tmp_path / f"bounded_{dtype}.py"
    path.write_text(source)
    x = _inside(rng, 5, -1.0, 1.0)
    got = np.asarray(import_program(path).score_batch(x), dtype=np.float64)
    want = net.forward(x, dtype=np.float32 if dtype == "float32" else np.float64)[:, 0]
    assert np.all(ulp_distance(got, np.asarray(want, dtype=np.float64)) == 0)


def test_compile_command_reports_the_passes(tmp_path):
    from click.testing import CliRunner

    from templater.cli import main

    net = _with_decided(np.random.default_rng(5), 3, (4,), 0.0, 1.0, "regression")
    net.save(tmp_path / "m.npz")
    out = tmp_path / "m.py"
    result = CliRunner().invoke(
        main, ["compile", str(tmp_path / "m.npz"), "--input-range", "0", "1", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "bounds over inputs in [0.0, 1.0]:" in result.output
    assert "layer 1 neuron 0" in result.output and "Exact passes" in out.read_text()
    bad = CliRunner().invoke(
        main, ["compile", str(tmp_path / "m.npz"), "--input-range", "1", "0", "-o",
               str(tmp_path / "n.py")]
    )
    assert bad.exit_code == 2 and not (tmp_path / "n.py").exists()
