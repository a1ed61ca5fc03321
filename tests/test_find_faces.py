"""find_faces in the emitted programs: the same boxes as the reference scan, and clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from templater import compile as compile_network
from templater.data.faces import photo
from templater.network import Dense, Head, Network, Normalization
from templater.scan import candidates, pyramid_level, scan


@pytest.fixture(scope="module")
def crop() -> np.ndarray:
    return np.ascontiguousarray(photo("astronaut")[40:160, 150:290])


@pytest.fixture(scope="module")
def numba_program(build_program, scan_net):
    return build_program(scan_net, "numba")


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"scales": (1.0, 0.7, 0.45), "stride": 3, "overlap": 0.1},
        {"scales": (0.9, 1.2), "stride": 1, "threshold": 1.0},
    ],
)
def test_numba_find_faces_is_the_reference_scan_bit_for_bit(
    numba_program, scan_net, crop, settings
):
    found = numba_program.find_faces(crop, **settings)
    expected = scan(scan_net, crop, exact=True, **settings)
    raw = candidates(
        scan_net,
        crop,
        settings.get("scales", (1.0, 0.8, 0.64, 0.5)),
        settings.get("stride", 2),
        settings.get("threshold"),
        exact=True,
    )
    assert found.dtype == np.float64 and found.shape[1] == 4
    assert len(found) >= 2 and len(raw) > len(found)  # something found, and NMS dropped some
    assert np.array_equal(found, expected)


@pytest.mark.parametrize("s", [1.0, 0.8, 0.64, 0.5, 0.33, 0.2, 1.3, 2.0])
def test_numba_pyramid_levels_are_the_reference_bit_for_bit(numba_program, s):
    # The compiled resampler must repeat scan.pyramid_level's float64 operations exactly, or
    # windows straddling the threshold could flip; odd sizes exercise the clamped edges.
    image = np.random.default_rng(3).random((61, 47))
    got = numba_program._pyramid_level(image, s)
    assert got.shape == pyramid_level(image, s).shape
    assert np.array_equal(got, pyramid_level(image, s))


def test_default_settings_are_the_reference_defaults(numba_program):
    from templater import scan as reference

    assert numba_program.DEFAULT_SCALES == reference.DEFAULT_SCALES
    assert numba_program.DEFAULT_STRIDE == reference.DEFAULT_STRIDE
    assert numba_program.DEFAULT_OVERLAP == reference.DEFAULT_OVERLAP
    assert numba_program.WINDOW == reference.WINDOW


def test_integer_and_readonly_images_scan_like_floats(numba_program, scan_net):
    img = (photo("astronaut")[100:150, 180:240] * 255).round().astype(np.uint8)
    img.setflags(write=False)
    assert np.array_equal(
        numba_program.find_faces(img, threshold=0.0), scan(scan_net, img, threshold=0.0, exact=True)
    )


def test_python_find_faces_is_the_reference_scan(build_program, scan_net, crop):
    program = build_program(scan_net, "python")
    img = crop[:60, :70]
    settings = {"scales": (1.0, 0.6), "stride": 4, "threshold": 0.0}
    found = program.find_faces(img.tolist(), **settings)
    expected = scan(scan_net, img, exact=True, **settings)
    assert isinstance(found, list) and len(found) >= 2
    assert all(isinstance(box, tuple) and len(box) == 4 for box in found)
    # Same boxes; scores agree to the last bits (the Python target's sqrt is v ** 0.5).
    assert np.array_equal(np.array(found)[:, :3], expected[:, :3])
    assert np.allclose(np.array(found)[:, 3], expected[:, 3], rtol=1e-12, atol=1e-12)


def _bad_images():
    rgb = np.random.default_rng(0).random((40, 40, 3))
    return [
        ("rgb", rgb, ValueError, "colour image"),
        ("rgba", np.random.default_rng(0).random((40, 40, 4)), ValueError, "colour image"),
        ("3-D", np.zeros((40, 40, 2)), ValueError, "2-D grayscale"),
        ("1-D", np.zeros(900), ValueError, "2-D grayscale"),
        ("small", np.zeros((24, 80)), ValueError, "smaller than the 25x25 window"),
        ("nan", np.where(np.eye(30) > 0, np.nan, 0.5), ValueError, "finite"),
        ("inf", np.full((30, 30), np.inf), ValueError, "finite"),
        ("string", "photo.png", TypeError, "2-D array"),
        ("dict", {"a": 1}, TypeError, "2-D array"),
        ("bool", np.ones((30, 30), dtype=bool), TypeError, "dtype bool"),
        ("objects", np.full((30, 30), None), TypeError, "dtype object"),
    ]


@pytest.mark.parametrize(
    "name, image, error, words", _bad_images(), ids=[b[0] for b in _bad_images()]
)
def test_numba_find_faces_refuses_bad_images(numba_program, name, image, error, words):
    with pytest.raises(error, match=words):
        numba_program.find_faces(image)


@pytest.mark.parametrize(
    "settings, error, words",
    [
        ({"stride": 0}, ValueError, "stride"),
        ({"stride": 1.5}, TypeError, "stride"),
        ({"stride": True}, TypeError, "stride"),
        ({"scales": (1.0, -0.5)}, ValueError, "scale"),
        ({"scales": (float("nan"),)}, ValueError, "scale"),
        ({"scales": "1.0"}, TypeError, "scales"),
        ({"scales": (40.0,)}, ValueError, "pixels"),
        ({"threshold": float("nan")}, ValueError, "threshold"),
        ({"overlap": "0.3"}, TypeError, "overlap"),
    ],
)
def test_numba_find_faces_refuses_bad_settings(numba_program, settings, error, words):
    with pytest.raises(error, match=words):
        numba_program.find_faces(np.zeros((300, 300)), **settings)


def test_python_find_faces_refuses_bad_images(build_program, scan_net):
    program = build_program(scan_net, "python")
    with pytest.raises(ValueError, match="colour or 3-D"):
        program.find_faces([[[0.1, 0.2, 0.3]] * 30] * 30)
    with pytest.raises(ValueError, match="smaller than the 25x25 window"):
        program.find_faces([[0.5] * 24] * 40)
    with pytest.raises(ValueError, match="finite"):
        program.find_faces([[float("nan")] * 30] * 30)
    with pytest.raises(ValueError, match="row 1 has 29 pixels"):
        program.find_faces([[0.5] * 30, [0.5] * 29])
    with pytest.raises(TypeError, match="sequence of rows"):
        program.find_faces("photo.png")
    with pytest.raises(ValueError, match="stride"):
        program.find_faces([[0.5] * 30] * 30, stride=0)


def test_only_binary_networks_over_square_windows_get_a_scanner(scan_net):
    assert "def find_faces(" in compile_network(scan_net, "python")
    flat = scan_net.with_layers(scan_net.layers, input_shape=None)
    oblong = scan_net.with_layers(scan_net.layers, input_shape=(5, 125))
    rng = np.random.default_rng(1)
    multi = Network(
        625,
        (Dense(rng.random((625, 3)), np.zeros(3)),),
        head=Head("multiclass"),
        normalization=Normalization("window"),
        input_shape=(25, 25),
    )
    for net in (flat, oblong, multi):
        assert "find_faces" not in compile_network(net, "python")


def test_committed_face_program_is_the_reference_scan(committed_face):
    net, program = committed_face
    img = np.ascontiguousarray(photo("astronaut")[:200, 100:350])
    found = program.find_faces(img)
    assert net.digest() == program.MODEL_DIGEST
    assert np.array_equal(found, scan(net, img, exact=True))
