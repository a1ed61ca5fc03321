"""verify: programs against the numpy reference, the tolerance, bad data."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

import templater
from templater.cli import main
from templater.errors import UnsafeInputError, UsageError
from templater.golden import default_root, read_manifest
from templater.network import Activation, Dense, Head, Network, Normalization
from templater.verify import compare_outputs, load_inputs, tolerance_for, ulp_distance, verify


def _net(act: str = "relu", norm: str = "none", head: str = "binary", seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    k = 1 if head == "binary" else 3
    last = "softmax" if head == "multiclass" else "identity"
    return Network(
        20,
        (
            Dense(rng.normal(size=(20, 6)) * 0.5, rng.normal(size=6), Activation(act)),
            Dense(rng.normal(size=(6, k)), rng.normal(size=k), Activation(last)),
        ),
        Head(head, 0.25) if head == "binary" else Head(head),
        Normalization(norm),
    )


@pytest.fixture(scope="module")
def relu_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("verify")
    net = _net("relu")
    model = folder / "model.npz"
    net.save(model)
    program = folder / "program.py"
    program.write_text(templater.compile(net, "python", "unrolled"), encoding="utf-8")
    return net, model, program


def test_ulp_distance():
    one = np.array([1.0, -0.0, -5e-324, 2.0])
    other = np.array([np.nextafter(1.0, 2.0), 0.0, 5e-324, 2.0])
    assert ulp_distance(one, other).tolist() == [1, 0, 2, 0]
    assert ulp_distance(np.array([np.nan]), np.array([1.0]))[0] == np.iinfo(np.uint64).max


def test_tolerance_is_exact_only_for_piecewise_linear():
    assert tolerance_for(_net("relu"), "python").exact
    assert tolerance_for(_net("relu", "window"), "numba").exact
    assert not tolerance_for(_net("relu", "window"), "python").exact  # v ** 0.5
    for act in ("sigmoid", "tanh"):
        assert not tolerance_for(_net(act), "numba").exact
    assert not tolerance_for(_net(head="multiclass"), "numba").exact  # softmax


def test_python_program_is_bit_exact(relu_files):
    net, _, program = relu_files
    report = verify(net, program, data="random", count=300)
    assert report.passed and report.max_ulps == 0 and report.max_abs_error == 0.0
    assert report.decisions_agree == 300


def test_hand_edited_literal_fails_naming_the_input(relu_files, tmp_path):
    _, model, program = relu_files
    text = program.read_text(encoding="utf-8")
    # Edit the first weight of neuron 0 by hand: `+ 0.123 * x[0]` -> `+ 0.124 * x[0]`-ish.
    found = re.search(r"^(\s+[+-] )(\d\.\d+)( \* x\[0\])$", text, re.MULTILINE)
    assert found
    edited = text.replace(found.group(0), f"{found.group(1)}{float(found.group(2)) + 0.5!r}"
                          f"{found.group(3)}", 1)
    bad = tmp_path / "edited.py"
    bad.write_text(edited, encoding="utf-8")
    result = CliRunner().invoke(main, ["verify", str(model), str(bad), "--data", "random"])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and re.search(r"input \d+: value differs", result.output)
    ok = CliRunner().invoke(main, ["verify", str(model), str(program), "--data", "random"])
    assert ok.exit_code == 0, ok.output


def test_near_threshold_inputs_are_listed_not_failed():
    net = _net("sigmoid")
    x = np.random.default_rng(1).uniform(size=(50, 20))
    ref = net.score(x)
    tol = tolerance_for(net, "python")
    at_edge = net.with_layers(net.layers, head=Head("binary", float(ref[7])))
    got = ref.copy()
    got[7] = np.nextafter(ref[7], np.inf)  # crosses the threshold, within the tolerance
    _, _, agree, near, findings = compare_outputs(at_edge, got, x, tol)
    assert [i for i, _ in near] == [7] and agree == 49 and not findings
    got[3] = at_edge.head.threshold + (at_edge.head.threshold - ref[3])  # a real flip
    findings = compare_outputs(at_edge, got, x, tol)[4]
    assert [f.index for f in findings] == [3]


@pytest.mark.slow
def test_numba_programs_exact_and_within_tolerance(tmp_path_factory):
    """Two numba compiles (table layout, under a second each): exact for ReLU with window
    normalisation, within the stated tolerance for tanh + softmax."""
    exact = verify(_net("relu", "window"), None, "numba", "table", "random", 500)
    assert exact.passed and exact.max_ulps == 0
    net = _net("tanh", head="multiclass")
    loose = verify(net, None, "numba", "table", "random", 500)
    assert loose.passed and loose.max_abs_error <= 1e-9
    assert loose.decisions == "argmax" and loose.decisions_agree + len(loose.near) >= 500


def test_every_generated_program_verifies():
    root = default_root()
    if not (root / "manifest.json").exists():
        pytest.skip("generated/ has no manifest")
    for entry in read_manifest(root):
        if entry.target != "python":
            continue  # the numba ones cost a JIT compile each; the CLI check covers them
        net = templater.load(root / entry.model)
        report = verify(net, root / entry.output, data="random", count=200)
        assert report.passed, report.lines()


def test_bad_data_files(relu_files, tmp_path):
    _, model, program = relu_files
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((4, 21)))
    result = CliRunner().invoke(main, ["verify", str(model), str(program), "--data", str(wide)])
    assert result.exit_code == 2
    assert "wide.npy: expected rows of 20 numbers" in result.output
    assert "(4, 21)" in result.output
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnsafeInputError, match="pickle"):
        load_inputs(str(objects), 20)
    with pytest.raises(UsageError, match=r"expected a \.npy file"):
        load_inputs(str(model), 20)
    with pytest.raises(UsageError, match="face test split has rows of 625"):
        load_inputs("faces", 20)


def test_program_of_another_model_is_refused(relu_files, tmp_path):
    _, _, program = relu_files
    other = tmp_path / "other.npz"
    _net("relu", seed=5).save(other)
    result = CliRunner().invoke(main, ["verify", str(other), str(program), "--json"])
    assert result.exit_code == 2 and "was compiled from model" in result.output


def test_a_program_given_as_the_model_is_refused_saying_so(relu_files):
    _, _, program = relu_files
    result = CliRunner().invoke(main, ["verify", str(program)])
    assert result.exit_code == 2
    assert "a program, where a model file (.npz, .onnx) is needed" in result.output


def test_json_report(relu_files):
    _, model, program = relu_files
    result = CliRunner().invoke(main, ["verify", str(model), str(program), "--json",
                                       "--data", "random", "--count", "50"])
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["passed"] and data["inputs"] == 50 and data["tolerance"]["exact"]
