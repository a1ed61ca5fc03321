"""from_onnx: real exporters end to end against onnxruntime, and bad ONNX input refused cleanly."""

from __future__ import annotations

import ast
import io
import warnings

import numpy as np
import pytest
from click.testing import CliRunner
from importer_support import TARGETS, decisions, load_program, outputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

import templater  # noqa: E402
from templater.cli import main  # noqa: E402
from templater.errors import (  # noqa: E402
    MalformedModelError,
    UnsafeInputError,
    UnsupportedError,
)
from templater.importers import from_onnx, from_torch, load_any  # noqa: E402

TOL = 1e-5
N = 1000


def _inputs(width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(N, width)).astype(np.float32)


def _ort(model_bytes: bytes, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


# -- real exporters -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sklearn_onnx(tmp_path_factory):
    """An MLPClassifier (3 classes) and a binary one, converted with skl2onnx."""
    pytest.importorskip("skl2onnx")
    from skl2onnx import to_onnx
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    folder = tmp_path_factory.mktemp("skl2onnx")
    x = _inputs(8, seed=1)
    out = {}
    for n_classes in (2, 3):
        y = np.digitize(x[:, 0] - x[:, 3], np.linspace(-0.7, 0.7, n_classes - 1))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MLPClassifier(hidden_layer_sizes=(16, 8), max_iter=300, random_state=0)
            model.fit(x, y)
        proto = to_onnx(model, x[:1], options={"zipmap": False})
        path = folder / f"mlp{n_classes}.onnx"
        path.write_bytes(proto.SerializeToString())
        out[n_classes] = path
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_skl2onnx_multiclass_matches_onnxruntime(tmp_path, sklearn_onnx, target):
    path = sklearn_onnx[3]
    net = from_onnx(path)  # picks 'probabilities', the only float output
    assert net.architecture == "8-16-8-3" and net.head.kind == "multiclass"
    x = _inputs(8, seed=2)
    label, proba = _ort(path.read_bytes(), x)
    program = load_program(net, target, tmp_path)
    assert np.abs(outputs(program, net, target, x) - proba).max() <= TOL
    assert np.array_equal(decisions(program, net, target, x), label)


@pytest.mark.parametrize("target", TARGETS)
def test_skl2onnx_binary_matches_onnxruntime(tmp_path, sklearn_onnx, target):
    path = sklearn_onnx[2]
    # skl2onnx writes [1 - p, p] with Sub and Concat; the score is p, before that tail.
    with pytest.raises(UnsupportedError, match=r"'Sub'.*'Concat'"):
        from_onnx(path)
    net = from_onnx(path, output="out_activations_result")
    assert net.head.kind == "binary" and net.head.threshold == 0.5
    x = _inputs(8, seed=3)
    label, proba = _ort(path.read_bytes(), x)
    program = load_program(net, target, tmp_path)
    assert np.abs(outputs(program, net, target, x)[:, 0] - proba[:, 1]).max() <= TOL
    assert np.array_equal(decisions(program, net, target, x), label == 1)


def _torch_model() -> nn.Module:
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Flatten(),
        nn.Linear(10, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(16, 8),
        nn.LeakyReLU(0.1),
        nn.Linear(8, 8),
        nn.Hardsigmoid(),
        nn.Linear(8, 4),
        nn.Tanh(),
        nn.Linear(4, 1),
        nn.Sigmoid(),
    )
    with torch.no_grad():
        module[2].running_mean.uniform_(-1, 1)
        module[2].running_var.uniform_(0.5, 2)
    return module.eval()


@pytest.fixture(scope="module")
def torch_onnx(tmp_path_factory):
    module = _torch_model()
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The dynamo exporter needs onnxscript (not a dependency); the TorchScript one warns.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            module, (torch.zeros(2, 10),), buffer, input_names=["x"], output_names=["p"],
            dynamic_axes={"x": {0: "n"}}, dynamo=False,
        )
    path = tmp_path_factory.mktemp("torch") / "model.onnx"
    path.write_bytes(buffer.getvalue())
    return module, path


@pytest.mark.parametrize("target", TARGETS)
def test_torch_export_matches_onnxruntime_and_module(tmp_path, torch_onnx, target):
    module, path = torch_onnx
    x = _inputs(10, seed=4)
    (expected,) = _ort(path.read_bytes(), x)
    with torch.no_grad():
        direct = module(torch.from_numpy(x)).numpy()
    for source, net in (("onnx", from_onnx(path)), ("torch", from_torch(module))):
        assert net.architecture == "10-16-8-8-4-1", source
        assert net.head.kind == "binary" and net.head.threshold == 0.5
        program = load_program(net, target, tmp_path, stem=source)
        got = outputs(program, net, target, x)
        reference = expected if source == "onnx" else direct
        assert np.abs(got - reference).max() <= TOL, source
        assert np.array_equal(decisions(program, net, target, x), reference[:, 0] > 0.5)


# -- the command line and load_any ----------------------------------------------------------------
def test_cli_import_and_compile_onnx(tmp_path, torch_onnx):
    _, path = torch_onnx
    out = tmp_path / "model.npz"
    result = CliRunner().invoke(main, ["import", str(path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "10-16-8-8-4-1" in result.output
    assert templater.load(out).digest() == from_onnx(path).digest()
    result = CliRunner().invoke(main, ["compile", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == templater.compile(from_onnx(path))


def test_cli_import_head_options(tmp_path, sklearn_onnx):
    out = tmp_path / "m.npz"
    args = ["import", str(sklearn_onnx[2]), "-o", str(out), "--tensor", "out_activations_result"]
    result = CliRunner().invoke(main, [*args, "--threshold", "0.7"])
    assert result.exit_code == 0, result.output
    assert templater.load(out).head.threshold == 0.7
    result = CliRunner().invoke(main, [*args, "--head", "regression"])
    assert result.exit_code == 0 and templater.load(out).head.kind == "regression"


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".joblib"])
def test_pickle_formats_are_refused_unread(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"\x80\x04K\x01.")  # a real pickle: it must not even be opened
    with pytest.raises(UnsafeInputError, match="would need unpickling"):
        load_any(path)


def test_load_any_dispatches_on_suffix(tmp_path, torch_onnx):
    _, path = torch_onnx
    net = load_any(path)
    net.save(tmp_path / "m.npz")
    assert load_any(tmp_path / "m.npz").digest() == net.digest()


# -- bad input: a clear error and no file ---------------------------------------------------------
def _chain(nodes, initializers, name="g", inputs=None, opset=17):
    graph = helper.make_graph(
        nodes, name,
        inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=initializers,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _gemm_relu(weights=None) -> onnx.ModelProto:
    w = np.arange(6, dtype=np.float32).reshape(3, 2) / 7 if weights is None else weights
    return _chain(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.ones(2, np.float32), "b")],
    )


def _import_refused(tmp_path, path, error, match):
    """The API raises `error`; the CLI prints one line, exits 2 and leaves no file behind."""
    with pytest.raises(error, match=match):
        from_onnx(path)
    out = tmp_path / "out.npz"
    result = CliRunner().invoke(main, ["import", str(path), "-o", str(out)])
    assert result.exit_code == 2
    assert result.output.startswith("templater: error: ") and str(path) in result.output
    assert not out.exists()
    existing = tmp_path / "existing.npz"
    existing.write_bytes(b"old bytes")
    result = CliRunner().invoke(main, ["import", str(path), "-o", str(existing)])
    assert result.exit_code == 2 and existing.read_bytes() == b"old bytes"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [path.name, "existing.npz"] if path.parent == tmp_path else ["existing.npz"]
    )


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    _import_refused(tmp_path, path, MalformedModelError, "empty.*no layers")


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.9, 0.99])
def test_truncated_file(tmp_path, fraction):
    data = _gemm_relu().SerializeToString()
    path = tmp_path / "cut.onnx"
    path.write_bytes(data[: int(len(data) * fraction)])
    _import_refused(tmp_path, path, MalformedModelError, "truncated or not an ONNX file|no layers")


def test_garbage_and_zip_files(tmp_path):
    for name, data in (("g.onnx", b"\xff" * 64), ("z.onnx", b"PK\x03\x04" + b"\0" * 40)):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MalformedModelError, match="not an ONNX file"):
            from_onnx(path)


def test_empty_graph(tmp_path):
    path = tmp_path / "empty_graph.onnx"
    path.write_bytes(_chain([], []).SerializeToString())
    _import_refused(tmp_path, path, MalformedModelError, "no nodes; model has no layers")


@pytest.mark.parametrize("location", ["weights.bin", "../../etc/passwd", "/etc/passwd"])
def test_external_data_is_refused_and_never_read(tmp_path, location):
    model = _gemm_relu()
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", location
    path = tmp_path / "external.onnx"
    path.write_bytes(model.SerializeToString())
    _import_refused(tmp_path, path, UnsafeInputError, "stored as external data")


def test_ops_outside_the_set_are_all_listed(tmp_path):
    model = _chain(
        [
            helper.make_node("Gemm", ["x", "w", "b"], ["h"]),
            helper.make_node("Gelu", ["h"], ["g"], name="act"),
            helper.make_node("Relu", ["g"], ["r"]),
            helper.make_node("Mystery", ["r"], ["y"], domain="com.example", name="m"),
        ],
        _gemm_relu().graph.initializer,
    )
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    path = tmp_path / "ops.onnx"
    path.write_bytes(model.SerializeToString())
    _import_refused(tmp_path, path, UnsupportedError, "2 unsupported node")
    with pytest.raises(UnsupportedError) as info:
        from_onnx(path)
    message = str(info.value)
    assert "node 1 'Gelu' (domain '', name 'act')" in message
    assert "node 3 'Mystery' (domain 'com.example', name 'm')" in message


def test_unsupported_attribute_and_opset(tmp_path):
    model = _gemm_relu()
    model.graph.node[1].attribute.append(helper.make_attribute("fancy", 1))
    path = tmp_path / "attr.onnx"
    path.write_bytes(model.SerializeToString())
    _import_refused(tmp_path, path, UnsupportedError, "unsupported attribute.*'fancy'")
    old = _gemm_relu()
    old.opset_import[0].version = 6
    path.write_bytes(old.SerializeToString())
    with pytest.raises(UnsupportedError, match="opset 6"):
        from_onnx(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_initializers(tmp_path, bad):
    w = np.ones((3, 2), np.float32)
    w[2, 1] = bad
    path = tmp_path / "nan.onnx"
    path.write_bytes(_gemm_relu(w).SerializeToString())
    _import_refused(tmp_path, path, MalformedModelError, r"tensor 'w'.*1 non-finite.*\(2, 1\)")


NASTY = 'q"\'\'\'"""\n\rx = 1\x00 \u202e\nimport os; os.system("echo pwned")  # ' + "z" * 10_000


def _structure(source: str) -> str:
    """The AST with every string constant blanked: what the code does, not what it says."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            node.value = ""
    return ast.dump(tree)


@pytest.mark.parametrize("target", TARGETS)
def test_names_full_of_quotes_and_newlines_change_nothing(tmp_path, target):
    plain, nasty = _gemm_relu(), _gemm_relu()
    nasty.graph.name = NASTY
    for node in nasty.graph.node:
        node.name = NASTY
    paths = []
    for name, model in (("plain", plain), ("nasty", nasty)):
        path = tmp_path / f"{name}.onnx"
        path.write_bytes(model.SerializeToString())
        paths.append(path)
    a, b = from_onnx(paths[0]), from_onnx(paths[1])
    assert b.name == NASTY and b.layers[0].name == NASTY
    assert a.digest() == b.digest()
    source_a, source_b = (templater.compile(n, target=target) for n in (a, b))
    assert _structure(source_a) == _structure(source_b)
    x = _inputs(3)[:20]
    program = load_program(b, target, tmp_path, stem="nasty")
    assert np.abs(outputs(program, b, target, x) - a.forward(x)).max() == 0.0
