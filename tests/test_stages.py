"""Staged scans: a face scanner's kernel stops scoring a block of windows once their scores,
bounded from the units scored so far, cannot pass the threshold (templater.forms.scan_stages).

Rows scoring above the threshold must get their exact score and every other row a value at most
the threshold, at every threshold, bit for bit, in float64 and float32. One 625-32-1 network,
compiled once per float type.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from templater import compile as compile_network
from templater import import_program
from templater.data.faces import photo
from templater.forms import STAGE_UNITS, scan_stages
from templater.network import Dense, Head, Network, Normalization
from templater.scan import scan, windows


def _net(width=32, output_weights=None, seed=5, hidden="relu", output="identity", layers=2):
    rng = np.random.default_rng(seed)
    v = rng.normal(0.0, math.sqrt(2.0 / width), (width, 1))
    if output_weights is not None:
        v = np.asarray(output_weights, dtype=np.float64).reshape(width, 1)
    dense = [
        Dense(
            rng.normal(0.0, math.sqrt(2.0 / 625), (625, width)), rng.normal(0, 0.1, width), hidden
        )
    ]
    if layers == 3:
        dense.append(Dense(rng.normal(0.0, 0.3, (width, width)), np.zeros(width), "relu"))
    dense.append(Dense(v, np.array([0.05]), output))
    return Network(
        625,
        tuple(dense),
        head=Head("binary", 0.5),
        normalization=Normalization("window"),
        input_shape=(25, 25),
        name="staged test net",
    )


@pytest.fixture(scope="module")
def staged_net():
    net = _net()
    assert scan_stages(net, ("table", "unrolled")) is not None
    return net


@pytest.fixture(scope="module", params=["float64", "float32"])
def staged(request, staged_net, tmp_path_factory):
    path = tmp_path_factory.mktemp("staged") / f"staged_{request.param}.py"
    path.write_text(compile_network(staged_net, "numba", dtype=request.param), encoding="utf-8")
    return request.param, import_program(path)


@pytest.fixture(scope="module")
def rows():
    """Windows of a photo (what a scan scores) and random rows."""
    _, pixels = windows(np.asarray(photo("astronaut"))[::2, ::2], 3)
    return np.concatenate([pixels[:3000], np.random.default_rng(2).random((1000, 625))])


def test_positive_units_come_first_and_stages_are_whole():
    v = np.array([-1.0, 2.0, 0.0, -0.5, 3.0, -0.0, -2.0, 1.0] * 4)
    stages = scan_stages(_net(output_weights=v), ("table", "unrolled"))
    assert stages is not None and sorted(stages.order) == list(range(32))
    n_positive = int((v > 0).sum())
    assert all(v[u] > 0 for u in stages.order[:n_positive])
    assert not any(v[u] > 0 for u in stages.order[n_positive:])
    assert stages.bound_from == 16 and stages.step == STAGE_UNITS


def test_the_first_stage_takes_what_whole_later_stages_leave():
    v = [1.0] * 5 + [-1.0] * 15  # 15 other units: one later stage of 8, 7 join the first
    stages = scan_stages(_net(width=20, output_weights=v), ("table", "unrolled"))
    assert stages is not None and stages.bound_from == 12 and stages.step == 8


@pytest.mark.parametrize(
    "net, layouts",
    [
        (_net(output_weights=np.ones(32)), ("table", "unrolled")),  # nothing lowers a score
        (_net(output_weights=[1.0] * 25 + [-1.0] * 7), ("table", "unrolled")),  # no early stage
        (_net(hidden="tanh"), ("table", "unrolled")),  # hidden outputs may be negative
        (_net(output="sigmoid"), ("table", "unrolled")),
        (_net(), ("table", "table")),  # no unrolled output to bound with
        (_net(layers=3), ("table", "table", "unrolled")),
    ],
)
def test_networks_a_bound_cannot_serve_are_not_staged(net, layouts):
    assert scan_stages(net, layouts) is None


@pytest.mark.slow
def test_staged_program_names_its_column_order(staged, staged_net):
    _, program = staged
    stages = scan_stages(staged_net, ("table", "unrolled"))
    assert stages.order == program.STAGED_UNITS and stages.bound_from == program.BOUND_FROM
    assert stages.step == program.STAGE_UNITS
    w = staged_net.layers[0].weights[:, list(stages.order)]
    assert np.array_equal(program.L1_W, w.astype(program.L1_W.dtype))


@pytest.mark.slow
def test_rows_above_the_threshold_are_exact_and_the_rest_at_most_it(staged, staged_net, rows):
    dtype, program = staged
    x = rows.astype(dtype)
    exact = staged_net.forward(x, exact=True, dtype=np.dtype(dtype).type)[:, 0]
    full = np.empty(len(x), dtype=dtype)
    program._scan_kernel(x, full, -math.inf)
    assert np.array_equal(full, exact)  # -inf: every row in full
    # thresholds at scores themselves and one ulp either side: where rounding would show
    picked = np.quantile(exact, [0.05, 0.5, 0.9, 0.99, 0.999], method="nearest")
    ulp = np.dtype(dtype).type
    thresholds = [
        t for p in picked for t in (np.nextafter(p, ulp(-np.inf)), p, np.nextafter(p, ulp(np.inf)))
    ]
    stopped = 0
    for t in thresholds:
        out = np.empty(len(x), dtype=dtype)
        program._scan_kernel(x, out, float(t))
        above = exact > t
        assert np.array_equal(out > t, above)
        assert np.array_equal(out[above], exact[above])
        assert (out >= exact).all()  # a bound, never below the score
        stopped += int((out != exact).sum())
    assert stopped > len(x)  # blocks did stop early: their rows hold bounds, not scores


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [None, -0.5, 1.5])
def test_staged_find_faces_is_the_reference_scan(staged, staged_net, threshold):
    dtype, program = staged
    img = np.ascontiguousarray(photo("astronaut")[:180, 120:330])
    found = program.find_faces(img, threshold=threshold)
    expected = scan(staged_net, img, threshold=threshold, exact=True, dtype=np.dtype(dtype).type)
    assert len(found) and np.array_equal(found, expected)
