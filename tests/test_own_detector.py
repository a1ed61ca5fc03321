"""The own convolutional detector: its model file, the folded normalisation, and find_faces by
the compiled program against the numpy reference."""

import numpy as np
import pytest

from templater import own_detector
from templater.convfile import convnet_digest
from templater.errors import MalformedModelError
from templater.own_detector import OwnDetector, find_faces, load, save
from templater.search import conv_sgd

STACK = conv_sgd.ConvStack((4, 8, 8), (3, 3, 3), (True, True, False), 1)


def _detector(seed=0, threshold=0.0):
    rng = np.random.default_rng(seed)
    params = conv_sgd.init_params(STACK, rng)
    params = [p + rng.normal(0.0, 0.05, p.shape) for p in params]
    return OwnDetector(STACK, tuple(params), threshold, {"name": "test", "seed": seed})


def _photo():
    from templater.data.faces import photo

    return photo("astronaut")[::2, ::2].copy()


def test_template_geometry():
    det = _detector()
    assert (det.window, det.stride) == (18, 4)
    assert det.network().receptive_field() == (18, 18)


def test_model_file_round_trip(tmp_path):
    det = _detector(1, threshold=1.25)
    save(det, tmp_path / "m.npz")
    back = load(tmp_path / "m.npz")
    assert back.stack == det.stack and back.threshold == 1.25
    assert back.metadata == det.metadata
    assert convnet_digest(back.network()) == convnet_digest(det.network())


def test_bad_model_files_are_refused(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(MalformedModelError):
        load(bad)
    np.savez(tmp_path / "other.npz", header=np.array('{"format": "something else"}'))
    with pytest.raises(MalformedModelError, match="not an own-detector"):
        load(tmp_path / "other.npz")


def test_folded_normalisation_matches_the_training_forward():
    det = _detector(2)
    x = np.random.default_rng(3).random((3, 1, 30, 26))
    trained, _ = conv_sgd.forward(STACK, list(det.params), own_detector.normalise(x))
    folded = det.network().forward(x)["face"]
    np.testing.assert_allclose(folded, trained, rtol=1e-9, atol=1e-9)


def test_small_images_give_no_boxes():
    det = _detector()
    assert find_faces is not None
    assert det.find_faces(np.zeros((20, 20)), min_face=24).shape == (0, 4)
    assert own_detector.scales((100, 200), 18, 24)[0] == 18 / 24


def test_colour_is_taken_as_gray():
    det = _detector(threshold=-1e9)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    from templater.data.faces import gray

    np.testing.assert_array_equal(det.find_faces(rgb), det.find_faces(gray(rgb)))


@pytest.mark.slow
def test_compiled_program_and_find_faces_equal_the_reference(tmp_path):
    from templater.conv_compiler import compile_conv
    from templater.programs import import_program

    det = _detector(4)
    net = det.network()
    path = tmp_path / "own_numba.py"
    path.write_text(compile_conv(net, "numba", dtype="float32"))
    program = import_program(path)
    rng = np.random.default_rng(5)
    for shape in ((1, 18, 18), (1, 41, 37), (1, 64, 90)):
        x = rng.random(shape)
        want = net.forward(x, np.float32)["face"]
        got = program.forward(x)["face"]
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    image = _photo()
    # A threshold that keeps a few hundred windows, so NMS has work to do.
    levels = own_detector.scales(image.shape, 18, 24)
    maps = [own_detector.level_map(image, s, net, None) for s in levels]
    threshold = float(np.quantile(np.concatenate([m.ravel() for m in maps]), 0.98))
    ref = det.find_faces(image, 24, threshold=threshold)
    out = det.find_faces(image, 24, program=program, threshold=threshold)
    assert len(ref) > 3
    np.testing.assert_array_equal(out, ref)


def test_committed_program_is_the_committed_model_compiled():
    from templater.conv_compiler import compile_conv
    from templater.own_train import provenance

    det = load(own_detector.GENERATED / "model.npz")
    source = compile_conv(det.network(), "numba", dtype="float32", provenance=provenance(det))
    assert (own_detector.GENERATED / "own_numba.py").read_text() == source


def _ensemble(k=3, threshold=0.0):
    members = [_detector(10 + i) for i in range(k)]
    params = tuple(p for m in members for p in m.params)
    return members, OwnDetector(STACK, params, threshold, {"name": "ens"})


def test_ensemble_network_scores_the_mean_of_its_members():
    members, ens = _ensemble(3)
    assert ens.members == 3 and all(m.members == 1 for m in members)
    net = ens.network()
    assert [layer.groups for layer in net.trunk if hasattr(layer, "groups")] == [1, 3, 3]
    x = np.random.default_rng(6).random((2, 1, 34, 30))
    got = net.forward(x)["face"]
    want = np.mean([m.network().forward(x)["face"] for m in members], axis=0)
    # float64, different summation order (one head sum over 3 * 8 channels): rounding only
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert np.ptp(want) > 0.1  # the members differ, so a wrong grouping would show
    fast = own_detector.member_scores(STACK, list(ens.params), own_detector.normalise(x))
    np.testing.assert_allclose(fast, want, rtol=1e-9, atol=1e-9)


def test_one_member_network_is_the_plain_net():
    det = _detector(7)
    a, b = det.network(), own_detector.to_network(STACK, list(det.params))
    assert convnet_digest(a) == convnet_digest(b)
    assert all(getattr(layer, "groups", 1) == 1 for layer in a.trunk)
    x = np.random.default_rng(8).random((1, 1, 22, 22))
    trained = conv_sgd.forward(STACK, list(det.params), own_detector.normalise(x))[0]
    np.testing.assert_array_equal(own_detector.member_scores(STACK, list(det.params),
                                                             own_detector.normalise(x)), trained)


def test_ensemble_model_file_round_trip_and_bad_counts(tmp_path):
    _, ens = _ensemble(2, threshold=0.5)
    save(ens, tmp_path / "e.npz")
    back = load(tmp_path / "e.npz")
    assert back.members == 2
    assert convnet_digest(back.network()) == convnet_digest(ens.network())
    with pytest.raises(MalformedModelError):
        OwnDetector(STACK, ens.params[:-1], 0.0).network()


@pytest.mark.slow
def test_compiled_ensemble_equals_the_reference(tmp_path):
    from templater.conv_compiler import compile_conv
    from templater.programs import import_program

    _, ens = _ensemble(3)
    net = ens.network()
    path = tmp_path / "own_ens_numba.py"
    path.write_text(compile_conv(net, "numba", dtype="float32"))
    program = import_program(path)
    x = np.random.default_rng(9).random((1, 45, 39))
    np.testing.assert_array_equal(program.forward(x)["face"], net.forward(x, np.float32)["face"])


@pytest.mark.slow  # compiles the committed program (about 10 s)
def test_templater_verify_reads_the_own_model_file_and_passes_the_committed_program(tmp_path):
    """`templater verify generated/own/model.npz generated/own/own_numba.py`: the model file is
    read as its one ConvNetwork, and a program from a changed model is caught."""
    from click.testing import CliRunner

    from templater.cli import main
    from templater.conv_compiler import compile_conv
    from templater.models import load_model

    model = own_detector.GENERATED / "model.npz"
    assert convnet_digest(load_model(model)) == convnet_digest(load(model).network())
    args = ["verify", str(model), str(own_detector.GENERATED / "own_numba.py"), "--count", "20"]
    run = CliRunner().invoke(main, args)
    assert run.exit_code == 0, run.output
    assert "OK: the program agrees with the reference" in run.output

    det = load(model)
    changed = list(det.params)
    changed[-1] = changed[-1] + 0.5  # a member's head bias: every score moves
    other = OwnDetector(det.stack, tuple(changed), det.threshold, det.metadata)
    program = tmp_path / "changed_numba.py"
    program.write_text(compile_conv(other.network(), "numba", dtype="float32"), encoding="utf-8")
    run = CliRunner().invoke(main, ["verify", str(model), str(program), "--count", "20"])
    assert run.exit_code == 1, run.output
