"""Model files: deterministic saves, and every bad input of BAD_INPUTS.md refused cleanly.

Each bad file goes through the CLI the way a user meets it: a one-line error, exit status 2,
no output file created, an existing output left byte-identical and no temp file left behind.
"""

from __future__ import annotations

import errno
import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

import templater
from templater import Dense, Head, Network, Normalization
from templater.cli import main
from templater.errors import TemplaterError
from templater.fileio import write_atomic


def small_net(**changes) -> Network:
    rng = np.random.default_rng(0)
    fields = dict(
        input_size=6,
        layers=(
            Dense(rng.normal(size=(6, 4)), rng.normal(size=4), "relu"),
            Dense(rng.normal(size=(4, 1)), np.zeros(1), "sigmoid"),
        ),
        head=Head("binary", 0.5),
        normalization=Normalization("window"),
        input_shape=(2, 3),
        name="small",
    )
    fields.update(changes)
    return Network(**fields)


def header(net: Network) -> dict:
    from templater.modelfile import header_of

    return json.loads(json.dumps(header_of(net)))


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def write_zip(path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def crafted(path, head_text: str | dict, arrays: dict[str, np.ndarray]) -> None:
    """A model file written by hand, bypassing every check templater makes when saving."""
    text = head_text if isinstance(head_text, str) else json.dumps(head_text)
    members = {"header.npy": npy(np.frombuffer(text.encode(), dtype=np.uint8))}
    members.update({name: npy(a) for name, a in arrays.items()})
    write_zip(path, members)


def arrays_of(net: Network) -> dict[str, np.ndarray]:
    out = {}
    for i, layer in enumerate(net.layers):
        out[f"layers.{i}.weights.npy"] = np.array(layer.weights)
        out[f"layers.{i}.bias.npy"] = np.array(layer.bias)
    return out


def test_save_is_deterministic_and_round_trips(tmp_path):
    net = small_net(name='quotes " and \n newlines', metadata={"seed": 3})
    a, b = tmp_path / "a.npz", tmp_path / "b.npz"
    net.save(a)
    net.save(b)
    assert a.read_bytes() == b.read_bytes()
    back = templater.load(a)
    assert back.digest() == net.digest() and back.name == net.name
    assert back.metadata == {"seed": 3}
    x = np.random.default_rng(1).normal(size=(5, 6))
    np.testing.assert_array_equal(back.forward(x), net.forward(x))
    # np.load reads it too, never needing pickle
    with np.load(a, allow_pickle=False) as data:
        assert set(data.files) == {
            "header",
            "layers.0.weights",
            "layers.0.bias",
            "layers.1.weights",
            "layers.1.bias",
        }


def test_subnormal_weights_round_trip_exactly(tmp_path):
    net = small_net()
    w = np.array(net.layers[0].weights)
    w[0, 0], w[1, 1] = 5e-324, float(np.float32(1e-45))
    net = net.with_layers((Dense(w, net.layers[0].bias, "relu"), net.layers[1]))
    net.save(tmp_path / "m.npz")
    back = templater.load(tmp_path / "m.npz").layers[0].weights
    assert back[0, 0] == 5e-324 and back[1, 1] == float(np.float32(1e-45))
    assert "5e-324" in templater.compile(net, "python", "unrolled")


# -- every bad file, through the CLI ----------------------------------------------------------


def _make(kind: str, path) -> None:
    net = small_net()
    h, arrays = header(net), arrays_of(net)
    if kind == "nan":
        arrays["layers.0.weights.npy"][2, 1] = np.nan
        arrays["layers.0.weights.npy"][3, 3] = np.inf
    elif kind == "huge":
        arrays["layers.1.weights.npy"][0, 0] = 1e308
    elif kind in ("json-nan", "json-inf", "json-big", "json-dup"):
        text = json.dumps(h)
        if kind == "json-nan":
            text = text.replace('"threshold": 0.5', '"threshold": NaN')
        elif kind == "json-inf":
            text = text.replace('"threshold": 0.5', '"threshold": Infinity')
        elif kind == "json-big":
            text = text.replace('"eps": 1e-06', '"eps": 1e400')
        else:
            text = text.replace('"kind": "binary"', '"kind": "binary", "kind": "multiclass"')
        crafted(path, text, arrays)
        return
    elif kind == "chain":
        h["layers"][1]["inputs"] = 5
        arrays["layers.1.weights.npy"] = np.ones((5, 1))
    elif kind == "bias":
        h["layers"][0]["outputs"] = 4
        arrays["layers.0.bias.npy"] = np.ones(3)
    elif kind == "rank1":
        arrays["layers.0.weights.npy"] = np.ones(24)
    elif kind == "rank3":
        arrays["layers.0.weights.npy"] = np.ones((6, 4, 1))
    elif kind == "no-layers":
        h["layers"] = []
        arrays = {}
    elif kind == "empty-layer":
        h["layers"][0]["outputs"] = 0
        arrays["layers.0.weights.npy"] = np.ones((6, 0))
        arrays["layers.0.bias.npy"] = np.ones(0)
    elif kind == "activation":
        h["layers"][0]["activation"] = {"name": "fake22"}
    elif kind == "activation-space":
        h["layers"][0]["activation"] = {"name": "RELU "}
    elif kind == "object":
        arrays["layers.0.bias.npy"] = np.array([1.0, "x", None, 2.0], dtype=object)
    elif kind in ("int", "float16", "complex", "strings"):
        dtype = {"int": np.int64, "float16": np.float16, "complex": np.complex128, "strings": "U3"}
        arrays["layers.0.weights.npy"] = np.ones((6, 4)).astype(dtype[kind])
    elif kind == "too-many":
        h["input"]["size"] = 100_000
        h["input"]["shape"] = None
        h["layers"][0]["inputs"] = 100_000
        h["layers"][0]["outputs"] = 1000
    elif kind == "declared-huge":
        # an npy header that declares 10^12 elements in a tiny member (a "bomb")
        bomb = io.BytesIO()
        np.lib.format.write_array_header_1_0(
            bomb, {"descr": "<f8", "fortran_order": False, "shape": (1_000_000, 1_000_000)}
        )
        members = {"header.npy": npy(np.frombuffer(json.dumps(h).encode(), np.uint8))}
        members.update({k: npy(v) for k, v in arrays.items()})
        members["layers.0.weights.npy"] = b"\x93NUMPY\x01\x00" + bomb.getvalue()[8:] + b"\0" * 64
        write_zip(path, members)
        return
    elif kind == "short-member":
        members = {"header.npy": npy(np.frombuffer(json.dumps(h).encode(), np.uint8))}
        members.update({k: npy(v) for k, v in arrays.items()})
        members["layers.0.weights.npy"] = members["layers.0.weights.npy"][:-150]
        write_zip(path, members)
        return
    else:
        raise AssertionError(kind)
    crafted(path, h, arrays)


BAD = {
    # kind: (exception class name, words the message must contain)
    "nan": ("MalformedModelError", ["header.layers[0]", "2 non-finite", "(2, 1)"]),
    "huge": ("MalformedModelError", ["layer 1 weights", "exceed"]),
    "json-nan": ("MalformedModelError", ["header.head.threshold", "NaN"]),
    "json-inf": ("MalformedModelError", ["header.head.threshold", "Infinity"]),
    "json-big": ("MalformedModelError", ["header.input.normalization.eps", "1e400"]),
    "json-dup": ("MalformedModelError", ["duplicate key 'kind'"]),
    "chain": ("MalformedModelError", ["layer 1 expects 5 inputs", "layer 0 gives 4"]),
    "bias": ("MalformedModelError", ["layers.0.bias", "shape (3,)", "(4,)"]),
    "rank1": ("MalformedModelError", ["layers.0.weights", "shape (24,)"]),
    "rank3": ("MalformedModelError", ["layers.0.weights", "shape (6, 4, 1)"]),
    "no-layers": ("MalformedModelError", ["model has no layers"]),
    "empty-layer": ("MalformedModelError", ["empty"]),
    "activation": ("UnsupportedError", ["'fake22'", "relu, leaky_relu"]),
    "activation-space": ("UnsupportedError", ["'RELU '", "supported"]),
    "object": ("UnsafeInputError", ["layers.0.bias", "unsafe"]),
    "int": ("MalformedModelError", ["dtype <i8"]),
    "float16": ("MalformedModelError", ["dtype <f2"]),
    "complex": ("MalformedModelError", ["dtype <c16"]),
    "strings": ("MalformedModelError", ["dtype <U3"]),
    "too-many": ("TooLargeError", ["100,001,005 parameters", "limit is 10,000,000"]),
    "declared-huge": ("MalformedModelError", ["shape (1000000, 1000000)", "declares (6, 4)"]),
    "short-member": ("MalformedModelError", ["declares 192 bytes", "truncated"]),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_model_file_is_refused_cleanly(kind, tmp_path):
    bad = tmp_path / "bad.npz"
    _make(kind, bad)
    exc_name, words = BAD[kind]
    tracemalloc.start()
    try:
        with pytest.raises(TemplaterError) as info:
            templater.load(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20  # refused from declared sizes, before allocating for them
    assert type(info.value).__name__ == exc_name, info.value
    for word in words:
        assert word in str(info.value), (word, str(info.value))
    assert str(bad) in str(info.value)
    _assert_cli_refuses(bad, tmp_path)


def _assert_cli_refuses(model, tmp_path) -> None:
    out = tmp_path / "out.py"
    out.write_text("previous program\n")
    before = sorted(os.listdir(tmp_path))
    result = CliRunner().invoke(main, ["compile", str(model), "--target", "python", "-o", str(out)])
    assert result.exit_code == 2, result.output
    message = result.output.strip().splitlines()
    assert 1 <= len(message) <= 2 and message[0].startswith("templater: error:")
    assert "Traceback" not in result.output
    assert out.read_text() == "previous program\n"
    assert sorted(os.listdir(tmp_path)) == before  # no temp file left


@pytest.mark.parametrize(
    "content, words",
    [
        (b"", ["empty", "no layers"]),
        (b"PK\x03\x04garbage", ["truncated or not a templater .npz"]),
        (b"\x80\x04\x95 pickle bytes", ["pickle", "never unpickles"]),
        (b"just some text", ["truncated or not a templater .npz"]),
    ],
)
def test_garbage_files_are_refused(content, words, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(content)
    with pytest.raises(TemplaterError) as info:
        templater.load(bad)
    for word in words:
        assert word in str(info.value)
    _assert_cli_refuses(bad, tmp_path)


def test_truncated_model_file_is_refused(tmp_path):
    good = tmp_path / "good.npz"
    small_net().save(good)
    data = good.read_bytes()
    for cut in (len(data) // 3, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(TemplaterError, match="truncated"):
            templater.load(bad)


def test_big_endian_and_float32_weights_are_converted_explicitly(tmp_path):
    net = small_net()
    arrays = arrays_of(net)
    arrays["layers.0.weights.npy"] = arrays["layers.0.weights.npy"].astype(">f8")
    arrays["layers.1.weights.npy"] = arrays["layers.1.weights.npy"].astype("<f4")
    path = tmp_path / "m.npz"
    crafted(path, header(net), arrays)
    back = templater.load(path)
    np.testing.assert_array_equal(back.layers[0].weights, net.layers[0].weights)
    assert back.layers[1].weights.dtype == np.float64
    np.testing.assert_array_equal(
        back.layers[1].weights, net.layers[1].weights.astype(np.float32).astype(np.float64)
    )


def test_in_memory_networks_are_checked_too():
    with pytest.raises(TemplaterError, match="non-finite"):
        Dense(np.array([[1.0, np.nan]]), np.zeros(2))
    with pytest.raises(TemplaterError, match="float32 or float64"):
        Dense(np.ones((2, 2), dtype=np.int64), np.zeros(2))
    with pytest.raises(TemplaterError, match="no layers"):
        Network(3, ())
    with pytest.raises(TemplaterError, match="parameters; the limit"):
        from templater.network import check_sizes

        check_sizes(10_000, [(10_000, 10_000)])  # 10^8 parameters, refused from sizes alone


# -- atomic writes (BAD_INPUTS #16) -------------------------------------------------------------


@pytest.mark.parametrize(
    "failure", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()]
)
def test_failed_write_keeps_the_old_file_and_leaves_no_temp(failure, tmp_path, monkeypatch):
    target = tmp_path / "model.npz"
    target.write_bytes(b"old contents")

    def broken_fsync(fd):
        raise failure

    monkeypatch.setattr(os, "fsync", broken_fsync)
    expected = TemplaterError if isinstance(failure, OSError) else KeyboardInterrupt
    with pytest.raises(expected):
        write_atomic(target, b"new contents that never land")
    assert target.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["model.npz"]


def test_unwritable_folder_is_a_clear_error(tmp_path):
    with pytest.raises(TemplaterError, match="cannot write"):
        write_atomic(tmp_path / "missing-folder" / "x.py", "text")
