"""Convolutional programs against the numpy reference: bit for bit for piecewise-linear layers.

Random small conv networks (1-3 conv layers, 1-8 channels, kernels 1-5, strides 1-2, explicit
and `same_upper` padding, max and average pools with ceil mode, PReLU, a dense head after a
flatten, two heads) are compiled for both targets and both layouts.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from templater import import_program
from templater.conv_compiler import compile_conv
from templater.convnet import Act, Conv2D, ConvNetwork, Flatten, Pool2D, PReLU
from templater.errors import MalformedModelError, UsageError
from templater.network import Dense


@st.composite
def conv_networks(draw, max_convs: int = 3, max_dense_inputs: int = 2000):
    """`max_dense_inputs`: no dense head past this many inputs (numba compiles an unrolled
    dense layer at about 10 ms a term: 1,470 x 3 took minutes)."""
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    channels = draw(st.integers(1, 3))
    c = channels
    trunk = []
    for _ in range(draw(st.integers(1, max_convs))):
        out = draw(st.integers(1, 8))
        k = draw(st.integers(1, 5))
        depthwise = c > 1 and draw(st.booleans())
        groups, out = (c, c) if depthwise else (1, out)
        padding = draw(
            st.one_of(
                st.just("same_upper"),
                st.tuples(*[st.integers(0, k - 1)] * 4),
            )
        )
        w = rng.normal(0, 0.5, (out, c // groups, k, k))
        w[rng.random(w.shape) < 0.1] = 0.0  # exact zeros are terms like any other
        trunk.append(Conv2D(w, rng.normal(0, 0.1, out), draw(st.integers(1, 2)), padding, groups))
        act = draw(st.sampled_from(["prelu", "relu", "leaky_relu", "none"]))
        if act == "prelu":
            trunk.append(PReLU(rng.normal(0.2, 0.1, out)))
        elif act != "none":
            trunk.append(Act(act))
        if draw(st.booleans()):
            kind = draw(st.sampled_from(["max", "avg"]))
            pk = draw(st.integers(1, 3))
            pool_pad = draw(st.sampled_from([(0, 0, 0, 0), "same_upper"])) if pk > 1 else (0,) * 4
            trunk.append(
                Pool2D(
                    kind,
                    (pk, pk),
                    draw(st.integers(1, 2)),
                    pool_pad,
                    draw(st.booleans()),
                    draw(st.booleans()),
                )
            )
        c = out
    dense_head = draw(st.booleans())
    size = (draw(st.integers(6, 14)), draw(st.integers(6, 14)))
    heads = [("map", (Conv2D(rng.normal(0, 0.5, (2, c, 1, 1)), rng.normal(0, 0.1, 2)),))]
    if dense_head:
        probe = ConvNetwork(channels, trunk, heads, size=None)
        rf = probe.receptive_field()
        size = (max(size[0], rf[0]), max(size[1], rf[1]))
        n_in = probe.shapes((1, channels, *size))["map"]
        flat = n_in[2] * n_in[3] * c
        order = draw(st.sampled_from(["chw", "hwc"]))
        dense_head = flat <= max_dense_inputs
    if dense_head:
        heads.append(
            (
                "vector",
                (
                    Flatten(order),
                    Dense(rng.normal(0, 0.3, (flat, 3)), rng.normal(0, 0.1, 3)),
                    Act("relu"),
                ),
            )
        )
    net = ConvNetwork(channels, trunk, heads, size=size if dense_head else None)
    rf = net.receptive_field()
    if net.size is None:
        size = (max(size[0], rf[0]), max(size[1], rf[1]))
    image = rng.normal(0, 1, (channels, *size))
    return net, image


def _program(tmp_path, net, target, layout, dtype="float64"):
    from templater.convfile import convnet_digest

    path = tmp_path / f"conv_{convnet_digest(net)}_{target}_{layout}_{dtype}.py"
    path.write_text(compile_conv(net, target, layout, dtype), encoding="utf-8")
    return import_program(path)


def _same(program_out, reference):
    for name, ref in reference.items():
        got = np.asarray(program_out[name], dtype=ref.dtype)
        assert got.shape == ref.shape, name
        assert np.array_equal(got, ref), (name, np.abs(got - ref).max())


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=conv_networks(), layout=st.sampled_from(["unrolled", "table"]))
def test_python_target_is_bit_for_bit(tmp_path, case, layout):
    net, image = case
    _same(_program(tmp_path, net, "python", layout).forward(image), net.forward(image))


@pytest.mark.slow
@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    case=conv_networks(max_convs=2, max_dense_inputs=200),
    layout=st.sampled_from(["unrolled", "table"]),
)
def test_numba_target_is_bit_for_bit(tmp_path, case, layout):
    net, image = case
    program = _program(tmp_path, net, "numba", layout)
    _same(program.forward(image), net.forward(image))
    # float32: the reference in float32 (weights rounded once, float32 arithmetic)
    program32 = _program(tmp_path, net, "numba", layout, "float32")
    _same(program32.forward(image), net.forward(image, dtype=np.float32))


def _tiny():
    rng = np.random.default_rng(0)
    return ConvNetwork(
        1,
        (Conv2D(rng.normal(size=(2, 1, 3, 3)), np.zeros(2)), PReLU(np.full(2, 0.25))),
        (("out", (Conv2D(rng.normal(size=(1, 2, 1, 1)), np.zeros(1)),)),),
    )


def test_receptive_field_and_small_images(tmp_path):
    net = _tiny()
    assert net.receptive_field() == (3, 3)
    program = _program(tmp_path, net, "python", "auto")
    with pytest.raises(ValueError, match="smaller than the receptive field"):
        program.forward(np.zeros((1, 2, 5)))
    with pytest.raises(UsageError, match="receptive field"):
        net.forward(np.zeros((1, 2, 5)))
    with pytest.raises(ValueError, match="channels"):
        program.forward(np.zeros((3, 5, 5)))
    with pytest.raises(ValueError, match="finite"):
        program.forward(np.full((1, 4, 4), np.nan))


def test_shapes_that_do_not_chain_are_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(MalformedModelError, match="expects 3 channels, gets 1"):
        ConvNetwork(
            1, (Conv2D(rng.normal(size=(2, 3, 3, 3)), np.zeros(2)),), (("o", (Act("relu"),)),)
        )
    with pytest.raises(MalformedModelError, match="slopes for"):
        ConvNetwork(
            1,
            (Conv2D(rng.normal(size=(2, 1, 3, 3)), np.zeros(2)),),
            (("o", (PReLU(np.ones(3)),)),),
        )
    with pytest.raises(MalformedModelError, match="bias has 3 values"):
        Conv2D(rng.normal(size=(2, 1, 3, 3)), np.zeros(3))


def test_generated_layers_constant_reads_back_as_data(tmp_path):
    import ast

    net = _tiny()
    source = compile_conv(net, "numba")
    tree = ast.parse(source)
    (node,) = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "LAYERS"]
    layers = ast.literal_eval(node.value)
    assert [d["kind"] for d in layers] == ["conv2d", "prelu", "conv2d"]
    assert layers[0]["kernel"] == (3, 3) and layers[2]["part"] == "head"
    # deterministic: the same network gives the same bytes
    assert compile_conv(net, "numba") == source


def test_model_file_round_trip_and_refusals(tmp_path):
    import io
    import json
    import zipfile

    from templater.convfile import convnet_digest, from_bytes, load, save, to_bytes
    from templater.modelfile import zip_members

    rng = np.random.default_rng(3)
    net = ConvNetwork(
        2,
        (
            Conv2D(rng.normal(size=(4, 2, 3, 3)), rng.normal(size=4), 2, "same_upper"),
            PReLU(rng.normal(size=4)),
            Pool2D("avg", (2, 2), 1, (1, 1, 0, 0), True, True),
        ),
        (
            ("map", (Conv2D(rng.normal(size=(1, 4, 1, 1)), np.zeros(1)), Act("sigmoid"))),
            ("vec", (Flatten("hwc"), Dense(rng.normal(size=(4 * 5 * 5, 2)), np.zeros(2)))),
        ),
        size=(9, 9),
        name="it's <a> name",
    )
    path = tmp_path / "net.npz"
    save(net, path)
    back = load(path)
    assert convnet_digest(back) == convnet_digest(net) and back.name == net.name
    assert to_bytes(back) == path.read_bytes()  # deterministic, byte for byte
    image = rng.normal(size=(2, 9, 9))
    for key, value in net.forward(image).items():
        assert np.array_equal(back.forward(image)[key], value)
    # a header whose declared shape disagrees with the member, and a missing member
    archive = zipfile.ZipFile(io.BytesIO(path.read_bytes()))
    members = {n: np.lib.format.read_array(io.BytesIO(archive.read(n))) for n in archive.namelist()}
    header = json.loads(members["header.npy"].tobytes())
    header["trunk"][0]["arrays"]["weights"] = [4, 2, 3, 2]
    bad = dict(members, **{"header.npy": np.frombuffer(json.dumps(header).encode(), np.uint8)})
    with pytest.raises(MalformedModelError, match="shape"):
        from_bytes(zip_members(bad), "bad.npz")
    missing = {k: v for k, v in members.items() if k != "trunk.1.slopes.npy"}
    with pytest.raises(MalformedModelError, match="missing"):
        from_bytes(zip_members(missing), "missing.npz")
    header = json.loads(members["header.npy"].tobytes())
    header["trunk"][0]["arrays"]["weights"] = [10_000, 1000, 3, 3]
    big = dict(members, **{"header.npy": np.frombuffer(json.dumps(header).encode(), np.uint8)})
    from templater.errors import TooLargeError

    with pytest.raises(TooLargeError):
        from_bytes(zip_members(big), "big.npz")


def test_verify_passes_and_catches_a_changed_weight(tmp_path):
    from templater.verify.conv import verify_conv

    net = _tiny()
    report = verify_conv(net, None, "python", count=20)
    assert report.passed and all(h.max_ulps == 0 for h in report.heads)
    source = compile_conv(net, "python", "table")
    weight = repr(float(net.trunk[0].weights[0, 0, 0, 0]))
    assert weight in source
    bad = tmp_path / "changed.py"
    bad.write_text(source.replace(weight, repr(float(weight) + 0.5), 1), encoding="utf-8")
    report = verify_conv(net, str(bad), count=20)
    assert not report.passed and report.heads[0].failures == 20


def test_diff_names_the_changed_output_channels():
    from dataclasses import replace

    from templater.diff.conv import diff_conv

    net = _tiny()
    conv = net.trunk[0]
    weights = conv.weights.copy()
    weights[1, 0, 2, 2] += 0.25
    changed = ConvNetwork(1, (replace(conv, weights=weights), net.trunk[1]), net.heads)
    result = diff_conv(net, changed, "a", "b", count=5)
    assert [(c.where, c.layer, c.channel, c.changed) for c in result.channels] == [
        ("trunk", 0, 1, 1)
    ]
    assert result.channels[0].max_change == 0.25 and not result.identical
    assert diff_conv(net, net, "a", "a", count=5).identical


@pytest.mark.slow  # compiles four programs (about 60 s)
def test_numba_forms_with_many_channels_are_bit_for_bit(tmp_path):
    """The numba table form's variants the random networks above rarely reach: rows form with
    two and four output channels per pass (10 and 12 outputs) and pairs of output rows (an odd
    last row, stride 2), the channels form in blocks of
    positions with a shorter last block (16+ outputs over rows of odd width, stride 2, padding)
    and with output channels padded to whole vectors (17, 20), blocks of 3 on a fixed-size
    net's rows of 9, a depthwise conv (one channel per pass), and the activations each form
    applies as it finishes its sums (PReLU, relu, leaky relu)."""
    from templater.conv_kernels import conv_target
    from templater.conv_lower import _block, _channels_inner, _channels_per_pass, kernels

    rng = np.random.default_rng(7)

    def conv(n_out, n_in, k, stride=1, padding=(0, 0, 0, 0), groups=1):
        w = rng.normal(0, 0.4, (n_out, n_in // groups, k, k))
        return Conv2D(w, rng.normal(0, 0.1, n_out), stride, padding, groups)

    trunk = [
        conv(10, 3, 3),
        PReLU(rng.normal(0.2, 0.1, 10)),
        conv(12, 10, 2),
        conv(16, 12, 3, stride=2, padding=(1, 0, 1, 2)),
        PReLU(rng.normal(0.2, 0.1, 16)),
        Pool2D("max", (3, 3), 2, "same_upper"),
        conv(17, 16, 3, padding="same_upper"),
        Act("relu"),
        conv(17, 17, 3, groups=17),
        Act("leaky_relu"),
        conv(6, 17, 3, stride=2, padding=(0, 1, 1, 0)),  # rows form, pairs of rows at stride 2
    ]
    convs = [c for c in trunk if isinstance(c, Conv2D)]
    assert [_channels_per_pass(c) for c in convs] == [2, 4, 4, 1, 1, 2]
    assert [_channels_inner(c, None) for c in convs] == [False, False, True, True, False, False]
    head = (conv(2, 6, 1), PReLU(rng.normal(0.2, 0.1, 2)))
    net = ConvNetwork(3, trunk, [("map", head)], size=None)
    # every activation above is applied by the conv before it: no kernel of its own is called
    fused = kernels(net, conv_target("numba", "float64"), "table")
    assert [k.name == "" for k in fused[0]] == [isinstance(x, (PReLU, Act)) for x in trunk]
    assert [k.name == "" for k in fused[1][0]] == [False, True]
    program = _program(tmp_path, net, "numba", "table")
    program32 = _program(tmp_path, net, "numba", "table", "float32")
    for rows in (41, 44):  # rows form outputs: an odd and an even number of rows in each conv
        image = rng.normal(0, 1, (3, rows, 37))
        _same(program.forward(image), net.forward(image))
        _same(program32.forward(image), net.forward(image, dtype=np.float32))

    # a fixed-size net: rows of 9 outputs in blocks of 3, 20 channels padded to whole vectors
    fixed_trunk = [conv(20, 3, 3), PReLU(rng.normal(0.2, 0.1, 20)), conv(24, 20, 3)]
    flat = 24 * 7 * 7
    fixed = ConvNetwork(
        3,
        fixed_trunk,
        [("vector", (Flatten("chw"), Dense(rng.normal(0, 0.1, (flat, 3)), np.zeros(3))))],
        size=(11, 11),
    )
    assert [_block(w) for w in (9, 7, 22, None)] == [3, 4, 4, 4]
    images = rng.normal(0, 1, (5, 3, 11, 11))
    for dtype in ("float64", "float32"):
        program = _program(tmp_path, fixed, "numba", "table", dtype)
        got = program.forward_batch(images)["vector"]
        for n in range(len(images)):
            ref = fixed.forward(images[n], dtype=np.dtype(dtype).type)["vector"]
            assert np.array_equal(np.asarray(got[n], dtype=ref.dtype), ref), dtype


def test_numba_hwc_maps_are_bit_for_bit(tmp_path):
    """A fixed-size net as RNet and ONet are (channels-form convs, max pools, a flatten in hwc
    order) keeps its maps as (rows, columns, channels): each pool reads and writes that layout,
    padded or not, in ceil mode too, with windows over the map's edge, and the flatten is a plain
    ravel. A flatten in chw order, or a conv with padding, takes (channels, rows, columns)
    maps as before. Both give the reference's numbers bit for bit."""
    from templater.conv_kernels import conv_target
    from templater.conv_lower import kernels

    rng = np.random.default_rng(11)

    def conv(n_out, n_in, k, padding=(0, 0, 0, 0)):
        w = rng.normal(0, 0.4, (n_out, n_in, k, k))
        return Conv2D(w, rng.normal(0, 0.1, n_out), 1, padding)

    def net(order, padding):
        trunk = [
            conv(20, 3, 3),
            PReLU(rng.normal(0.2, 0.1, 20)),
            Pool2D("max", (3, 3), 2, "same_upper"),
            conv(24, 20, 3),
            Act("relu"),
            Pool2D("max", (2, 2), 2, (0, 0, 0, 0), ceil_mode=True),
            conv(16, 24, 2, padding),
            Pool2D("max", (2, 2), 1, (1, 0, 0, 1)),
            Flatten(order),
        ]
        probe = ConvNetwork(3, trunk[:-1], [("v", (Flatten(order),))], size=(23, 23))
        n = probe.shapes((1, 3, 23, 23))["v"][1]
        dense = Dense(rng.normal(0, 0.1, (n, 3)), rng.normal(0, 0.1, 3))
        return ConvNetwork(3, trunk, [("vector", (dense,))], size=(23, 23))

    target = conv_target("numba", "float32")
    images = rng.normal(0, 1, (4, 3, 23, 23))
    for order, padding, pools_hwc in (
        ("hwc", (0, 0, 0, 0), [True, True, True]),  # every map after conv 0
        ("chw", (0, 0, 0, 0), [True, True, False]),  # the last conv writes chw for the flatten
        ("hwc", (1, 1, 0, 0), [True, False, True]),  # the padded conv reads chw
    ):
        model = net(order, padding)
        trunk = [k for k in kernels(model, target, "table")[0] if k.name]
        pools = [k for k in trunk if "pool" in k.description]
        assert ["hwc maps" in k.description for k in pools] == pools_hwc
        # an hwc flatten of an hwc map is a ravel, no transposing copy
        assert ("of an hwc map" in trunk[-1].description) == (order == "hwc")
        assert trunk[-1].name == "_ravel"  # a chw map in chw order lies as flattened too
        for dtype in ("float64", "float32"):
            program = _program(tmp_path, model, "numba", "table", dtype)
            got = program.forward_batch(images)["vector"]
            for n in range(len(images)):
                ref = model.forward(images[n], dtype=np.dtype(dtype).type)["vector"]
                assert np.array_equal(np.asarray(got[n], dtype=ref.dtype), ref), (order, dtype)
