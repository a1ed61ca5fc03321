"""diff: a model change reviewed as a program change."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from click.testing import CliRunner

import templater
from templater.cli import main
from templater.diff import diff, read_side
from templater.network import Activation, Dense, Head, Network, Normalization

HIDDEN = 8  # removing one neuron keeps one-digit names (l1_h0..l1_h6): no renaming


@pytest.fixture(scope="module")
def face_models(tmp_path_factory):
    """A small face model (1,500 SGD steps) and the same fine-tuned for one epoch, as model
    files and python programs; plus the face test split. Both decide at 0.0, the loss's own
    boundary: a threshold chosen again on the validation windows moved with the scores and,
    since the anti-aliased pyramid changed the photo windows, left no test decision changed."""
    from templater import train
    from templater.search import search
    from templater.search.objective import Objective, Template

    folder = tmp_path_factory.mktemp("diff")
    config = train.TrainConfig(arch=f"625-{HIDDEN}-1")
    train_set, val, test = train.prepare(config)
    norm = Normalization("window")
    template = Template.mlp((625, HIDDEN, 1))
    objective = Objective(template, norm.apply(train_set.x), train_set.y, norm.apply(val.x), val.y)
    rng = np.random.default_rng(0)
    nets = []
    theta = search(objective, "sgd", 1500, rng).theta
    for step in range(2):
        if step:  # one epoch of fine-tuning
            budget = math.ceil(len(train_set) / train.BATCH)
            theta = search(objective, "sgd", budget, rng, theta0=theta).theta
        nets.append(Network(625, template.layers(theta), Head("binary", 0.0), norm, (25, 25)))
    paths = {}
    for name, net in zip("ab", nets, strict=True):
        paths[f"{name}.npz"] = folder / f"{name}.npz"
        net.save(paths[f"{name}.npz"])
        paths[f"{name}.py"] = folder / f"{name}.py"
        paths[f"{name}.py"].write_text(templater.compile(net, "python", "unrolled"), "utf-8")
    return nets, paths, test.x, folder


def _small(hidden: int = HIDDEN, seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    return Network(
        12,
        (
            Dense(rng.normal(size=(12, hidden)), rng.normal(size=hidden), Activation("relu")),
            Dense(rng.normal(size=(hidden, 1)), rng.normal(size=1)),
        ),
        Head("binary", 0.5),
    )


def _write(net: Network, path, target: str = "python", layout: str = "unrolled"):
    path.write_text(templater.compile(net, target, layout), encoding="utf-8")
    return path


def _changed_lines(unified: str) -> tuple[list[str], list[str]]:
    lines = [x for x in unified.splitlines() if not x.startswith(("---", "+++"))]
    return [x[1:] for x in lines if x.startswith("-")], [x[1:] for x in lines if x.startswith("+")]


# Lines that name the model (digest, architecture, layer sizes) change with any model change.
# Lines that name the model or its sizes: the docstring, the digest, the layer comments and the
# entries of the LAYERS constant (one key per line).
_HEADER = re.compile(r"templater program|^MODEL_DIGEST|# layer \d+: dense|^        '[a-z_]+': ")


@pytest.mark.slow
def test_identical_models_empty_diff_exit_0(face_models):
    _, paths, _, _ = face_models
    result = diff(paths["a.npz"], paths["a.npz"], data=None)
    assert result.identical and result.unified == "" and not result.structure.changed
    cli = CliRunner().invoke(main, ["diff", str(paths["a.py"]), str(paths["a.npz"]),
                                    "--data", "none"])
    assert cli.exit_code == 0, cli.output
    assert "identical programs" in cli.output


@pytest.mark.slow
def test_fine_tune_lists_changed_neurons_and_counts_flips(face_models, tmp_path):
    (net_a, net_b), paths, x_test, _ = face_models
    png = tmp_path / "flips.png"
    cli = CliRunner().invoke(main, ["diff", str(paths["a.py"]), str(paths["b.py"]), "--json",
                                    "--data", "faces", "--png", str(png)])
    assert cli.exit_code == 1, cli.output
    out = json.loads(cli.output)
    layer1 = out["structure"]["layers"][0]
    changed = np.flatnonzero(np.any(net_a.layers[0].weights != net_b.layers[0].weights, axis=0)
                             | (net_a.layers[0].bias != net_b.layers[0].bias))
    assert [n["a"] for n in layer1["neurons"]] == [f"l1_h{j}" for j in changed]
    for n in layer1["neurons"]:
        j = int(n["a"][4:])
        delta = np.abs(np.r_[net_b.layers[0].bias[j] - net_a.layers[0].bias[j],
                             net_b.layers[0].weights[:, j] - net_a.layers[0].weights[:, j]])
        assert n["weights_changed"] == int(np.sum(delta != 0))
        assert n["max_abs_change"] == pytest.approx(delta.max())
    assert out["structure"]["threshold"] == [net_a.head.threshold, net_b.head.threshold]
    # An independent count with the numpy reference on the face test split.
    da, db = net_a.decide(x_test), net_b.decide(x_test)
    behaviour = out["behaviour"]
    assert behaviour["inputs"] == len(x_test)
    assert behaviour["flips"] == int(np.sum(da != db)) > 0
    assert behaviour["to_positive"] == int(np.sum(~da & db))
    assert behaviour["to_negative"] == int(np.sum(da & ~db))
    assert sorted(behaviour["flipped_inputs"]) == np.flatnonzero(da != db).tolist()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _remove(net: Network, j: int) -> Network:
    l1, l2 = net.layers
    keep = [k for k in range(l1.n_outputs) if k != j]
    return net.with_layers((
        Dense(l1.weights[:, keep], l1.bias[keep], l1.activation),
        Dense(l2.weights[keep], l2.bias, l2.activation),
    ))


def _block(text: str, j: int) -> list[str]:
    """The lines of neuron j's sum and ReLU in an unrolled layer 1."""
    lines = text.splitlines()
    start = lines.index(f"    l1_s{j} = (")
    end = lines.index(f"        l1_h{j} = 0.0", start)
    return lines[start : end + 1]


def test_removed_neuron_is_its_block_and_one_term(tmp_path):
    net = _small()
    last = HIDDEN - 1
    a = _write(net, tmp_path / "a.py")
    b = _write(_remove(net, last), tmp_path / "b.py")
    result = diff(a, b, data=None)
    removed, added = _changed_lines(result.unified)
    block = _block(a.read_text(), last)
    term = [x for x in a.read_text().splitlines() if x.endswith(f"* l1_h{last}")]
    assert len(term) == 1
    assert [x for x in removed if not _HEADER.search(x)] == [*block, *term]
    assert all(_HEADER.search(x) for x in added)
    layer1, layer2 = result.structure.layers
    assert [(n.a, n.status) for n in layer1.neurons] == [(f"l1_h{last}", "removed")]
    assert layer1.unchanged == HIDDEN - 1
    assert [(n.a, n.weights_changed) for n in layer2.neurons] == [("l2_h0", 1)]


def test_removed_middle_neuron_renumbers_the_rest(tmp_path):
    net = _small()
    result = diff(_write(net, tmp_path / "a.py"), _write(_remove(net, 3), tmp_path / "b.py"),
                  data=None)
    statuses = [(n.a, n.b, n.status) for n in result.structure.layers[0].neurons]
    assert statuses[0] == ("l1_h3", None, "removed")
    assert statuses[1:] == [(f"l1_h{j}", f"l1_h{j - 1}", "renumbered") for j in range(4, 8)]


def test_pruned_neuron_disappears_from_the_program(tmp_path):
    net = _small()
    l1, l2 = net.layers
    w2 = l2.weights.copy()
    w2[3] = 0.0
    pruned = net.with_layers((l1, Dense(w2, l2.bias)))
    a = _write(net, tmp_path / "a.py")
    result = diff(a, _write(pruned, tmp_path / "b.py"), data="random")
    removed, added = _changed_lines(result.unified)
    term = [x for x in a.read_text().splitlines() if x.endswith("* l1_h3")]
    assert [x for x in removed if not _HEADER.search(x)] == [*_block(a.read_text(), 3), *term]
    assert all(_HEADER.search(x) for x in added)
    assert [(n.a, n.status) for n in result.structure.layers[0].neurons] == [("l1_h3", "pruned")]
    x = np.random.default_rng(0).uniform(size=(1000, 12))
    assert len(result.behaviour.flips) == int(np.sum(net.decide(x) != pruned.decide(x)))


@pytest.mark.parametrize(("target", "layout"), [("python", "unrolled"), ("numba", "table"),
                                                ("numba", "auto")])
def test_weights_recovered_from_program_text(tmp_path, target, layout):
    """Parsing (never running) a program gives back the model's weights exactly."""
    rng = np.random.default_rng(3)
    net = Network(
        9,
        (
            Dense(rng.normal(size=(9, 5)), rng.normal(size=5), Activation("leaky_relu", 0.1)),
            Dense(rng.normal(size=(5, 4)), rng.normal(size=4), Activation("hard_sigmoid")),
            Dense(rng.normal(size=(4, 3)), rng.normal(size=3), Activation("softmax")),
        ),
        Head("multiclass"),
        Normalization("window"),
    )
    side = read_side(_write(net, tmp_path / "p.py", target, layout), target)
    assert side.kind == "program" and side.target == target
    for view, layer in zip(side.layers, net.layers, strict=True):
        assert np.array_equal(view.weights, layer.weights)
        assert np.array_equal(view.bias, layer.bias)
    net.save(tmp_path / "m.npz")
    model = read_side(tmp_path / "m.npz", target, layout)
    assert model.text == (tmp_path / "p.py").read_text()
    assert not diff(tmp_path / "p.py", tmp_path / "m.npz", data=None).structure.changed


@pytest.mark.slow
def test_bad_inputs(tmp_path, face_models):
    _, paths, _, _ = face_models
    runner = CliRunner()
    small = _write(_small(), tmp_path / "small.py")
    numba = _write(_small(), tmp_path / "small_numba.py", "numba", "table")
    cases = [
        ([str(small), str(numba)], "python program but"),
        ([str(small), str(paths["a.py"])], "takes 12 inputs but"),
    ]
    text = tmp_path / "notes.py"
    text.write_text("print('hello')\n")
    cases.append(([str(small), str(text)], "not a templater program"))
    other = tmp_path / "weights.txt"
    other.write_text("1 2 3\n")
    cases.append(([str(small), str(other)], "weights.txt: neither a model file"))
    wide = tmp_path / "wide.npy"
    np.save(wide, np.zeros((3, 13)))
    png = tmp_path / "never.png"
    cases.append(([str(small), str(small), "--data", str(wide), "--png", str(png)],
                  "expected rows of 12 numbers"))
    for args, message in cases:
        result = runner.invoke(main, ["diff", *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    assert not png.exists()


def test_a_staged_scanners_weights_are_read_back_in_model_order(tmp_path):
    """A face scanner's table holds layer 1's units positive-output-weight first
    (STAGED_UNITS): read back, every unit is where the model has it."""
    rng = np.random.default_rng(8)
    v = np.array([[1.0], [-1.0], [-0.5], [0.5], [-2.0], [0.25], [-1.5], [-0.75]] * 2)
    net = Network(
        625,
        (
            Dense(rng.normal(0, 0.05, (625, 16)), rng.normal(0, 0.1, 16), Activation("relu")),
            Dense(v, np.array([0.1])),
        ),
        Head("binary", 0.5),
        Normalization("window"),
        input_shape=(25, 25),
    )
    path = _write(net, tmp_path / "face_numba.py", "numba", "auto")
    assert "STAGED_UNITS = " in path.read_text()
    side = read_side(path, "numba")
    for view, layer in zip(side.layers, net.layers, strict=True):
        assert np.array_equal(view.weights, layer.weights)
        assert np.array_equal(view.bias, layer.bias)
    net.save(tmp_path / "m.npz")
    assert not diff(path, tmp_path / "m.npz", data=None).structure.changed


def test_a_staged_order_that_is_not_a_permutation_is_refused(tmp_path):
    rng = np.random.default_rng(9)
    net = Network(
        625,
        (
            Dense(rng.normal(0, 0.05, (625, 16)), rng.normal(0, 0.1, 16), Activation("relu")),
            Dense(np.array([[1.0], [-1.0]] * 8), np.array([0.1])),
        ),
        Head("binary", 0.5),
        input_shape=(25, 25),
    )
    path = _write(net, tmp_path / "face_numba.py", "numba", "auto")
    text = path.read_text()
    order = re.search(r"^        'columns': .*$", text, re.MULTILINE).group(0)
    path.write_text(text.replace(order, f"        'columns': {(0,) * 16!r},"), encoding="utf-8")
    result = CliRunner().invoke(main, ["diff", str(path), str(path)])
    assert result.exit_code == 2
    assert "columns is not an order of layer 1's 16 units" in result.output
