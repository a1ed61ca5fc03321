"""`templater train` and `compare`: the face model, its files, determinism and bad input."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from templater.cli import main
from templater.errors import UsageError
from templater.modelfile import load, to_bytes
from templater.train import (
    FACE_RECALL_SWEEP,
    TrainConfig,
    cross_validate,
    detection_threshold,
    detector_metrics,
    face_threshold,
    fit,
    output_paths,
    parse_arch,
    prepare,
    train,
    write_outputs,
)

# Small enough to train in about a second; mining scans one small pyramid level.
TINY = TrainConfig(
    epochs=1, bootstrap=1, photo_windows=20, augment_copies=1, mine_scales=(0.25,), ensemble=1
)


@pytest.mark.slow
def test_default_model_is_accurate_fast_and_well_formed(default_training) -> None:
    result, _ = default_training  # its time is measured in the README, never asserted
    assert result.metrics["test"]["accuracy"] >= 0.93
    assert result.metrics["test"]["roc_auc"] >= 0.9
    net = result.network
    assert net.architecture == f"625-{16 * result.config.ensemble}-1"
    assert net.input_shape == (25, 25)
    assert net.normalization.kind == "window"
    assert [d.activation.name for d in net.layers] == ["relu", "identity"]
    assert net.head.kind == "binary" and np.isfinite(net.head.threshold)
    assert result.metrics["hard_negatives_per_round"] and result.metrics["evaluations"] > 0
    json.dumps(net.metadata, allow_nan=False)


@pytest.mark.slow
def test_outputs_are_written_and_the_model_round_trips(default_training, tmp_path: Path) -> None:
    result, _ = default_training
    paths = write_outputs(result, tmp_path / "face.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["face.npz", "face.curve.png", "face.weights.png", "face.metrics.json"]
    )
    for key in ("curve", "weights"):
        assert paths[key].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads(paths["metrics"].read_text())
    for key in ("accuracy", "roc_auc", "precision", "recall"):
        assert 0.0 <= metrics["test"][key] <= 1.0
    assert metrics["threshold"] == result.network.head.threshold
    assert load(paths["model"]).digest() == result.network.digest()


@pytest.mark.slow
def test_same_seed_gives_a_byte_identical_model() -> None:
    a = to_bytes(train(TINY).network)
    b = to_bytes(train(TINY).network)
    c = to_bytes(train(TrainConfig(**{**TINY.__dict__, "seed": 1})).network)
    assert a == b and a != c


@pytest.mark.slow
def test_an_ensemble_is_one_wider_network_whose_first_member_is_the_single_one() -> None:
    # Without bootstrapping the members never see each other: member 0 is the single network.
    config = TrainConfig(**{**TINY.__dict__, "bootstrap": 0})
    single = train(config).network
    pair = train(TrainConfig(**{**config.__dict__, "ensemble": 2})).network
    assert pair.architecture == "625-32-1" and "2 x 625-16-1" in pair.name
    assert np.array_equal(pair.layers[0].weights[:, :16], single.layers[0].weights)
    assert np.array_equal(pair.layers[1].weights[:16] * 2.0, single.layers[1].weights)
    assert not np.array_equal(pair.layers[0].weights[:, 16:], single.layers[0].weights)


@pytest.mark.slow
def test_an_ensemble_with_bootstrapping_is_deterministic() -> None:
    config = TrainConfig(**{**TINY.__dict__, "ensemble": 2})
    assert to_bytes(train(config).network) == to_bytes(train(config).network)


@pytest.mark.slow
def test_a_mirrored_detector_is_the_plain_one_averaged_with_its_mirror_image() -> None:
    plain = train(TINY)
    result = train(TrainConfig(**{**TINY.__dict__, "mirror": True}))
    net = result.network
    assert net.architecture == "625-32-1" and net.name.endswith("mirror-averaged")
    # Mirroring comes after the search: the first half is the plain detector's first layer.
    w = net.layers[0].weights
    assert np.array_equal(w[:, :16], plain.network.layers[0].weights)
    assert np.array_equal(w.reshape(25, 25, 32)[:, :, 16:], w.reshape(25, 25, 32)[:, ::-1, :16])
    assert np.array_equal(net.layers[1].weights[:16] * 2.0, plain.network.layers[1].weights)
    assert net.head.threshold != plain.network.head.threshold  # chosen for the new scores
    assert result.metrics["config"]["mirror"] is True


def test_the_unseen_rule_leaves_one_box_fewer_on_the_validation_photos() -> None:
    from templater.data import faces
    from templater.network import Dense, Head, Network, Normalization
    from templater.scan import scan

    w = np.zeros((625, 1))
    w[312, 0] = 1.0  # the centre pixel, after normalisation
    net = Network(625, (Dense(w, np.zeros(1)),), Head("binary", 0.0), Normalization("window"))
    photos, scales, budget = ("coins",), (0.5,), 30.0  # 0.116 MP: 3 boxes allowed
    boxes = {}
    for rule in ("validation", "unseen"):
        t = detection_threshold(net, photos, scales, budget, rule)
        boxes[rule] = len(scan(net, faces.photo("coins"), scales, 2, t))
    assert boxes == {"validation": 3, "unseen": 2}


@pytest.mark.slow
def test_the_faces_rule_lets_the_stated_share_of_validation_faces_through() -> None:
    scores = np.array([3.0, 9.0, 1.0, 7.0, 5.0])
    assert face_threshold(scores, 0.4) == 6.0  # 2 of 5 above: halfway between 7 and 5
    assert face_threshold(scores, 0.5) == 4.0  # ceil(2.5) = 3 above
    with pytest.raises(UsageError, match="no threshold"):
        face_threshold(scores, 0.999)
    config = TrainConfig(**{**TINY.__dict__, "threshold_rule": "faces", "face_recall": 0.25})
    result = train(config)
    net = result.network
    from templater.data import faces

    _, val, _ = faces.split(faces.base_windows(config.photo_windows), 0, 5, seed=config.seed)
    passed = net.score(val.x[val.kind == 0]) > net.head.threshold
    assert passed.sum() == np.ceil(0.25 * len(passed))
    assert "0.25 of the validation faces" in result.metrics["threshold_rule"]


@pytest.mark.slow
def test_cross_validation_reports_mean_and_spread() -> None:
    config = TrainConfig(
        epochs=1, bootstrap=0, photo_windows=20, augment_copies=1, ensemble=1,
        validation_photo_folds=1,
    )
    out = cross_validate(config, 3)
    assert len(out["per_fold"]) == 3
    assert out["accuracy"]["min"] <= out["accuracy"]["mean"] <= out["accuracy"]["max"]
    assert out["accuracy"]["std"] >= 0.0
    # The detector's results: every training photo and every lfw face is tested exactly once.
    from templater.data import faces

    tested = sorted(name for m in out["per_fold"] for name in m["photos"])
    assert tested == sorted(faces.TRAINING_PHOTOS)
    d = out["detector"]
    assert d["faces"] == faces.N_LFW_FACES
    mp = sum(faces.photo(name).size for name in faces.TRAINING_PHOTOS) / 1e6
    assert abs(d["megapixels"] - mp) < 1e-9
    for m in out["per_fold"]:
        assert 0 <= m["faces_found"] <= m["faces"] and m["boxes"] >= 0
        assert 0 <= m["faces_found_at_1_box_per_megapixel"] <= m["faces"]
    assert d["boxes_per_megapixel"] == pytest.approx(sum(m["boxes"] for m in out["per_fold"]) / mp)
    # The sweep: a higher face recall lowers the threshold, so more faces and boxes pass.
    sweep = list(d["face_recall_sweep"].values())
    assert list(d["face_recall_sweep"]) == [f"{r:g}" for r in FACE_RECALL_SWEEP]
    for low, high in itertools.pairwise(sweep):
        assert low["face_recall"] <= high["face_recall"]
        assert low["boxes_per_megapixel"] <= high["boxes_per_megapixel"]


@pytest.mark.slow
def test_the_sweep_counts_the_boxes_a_scan_at_its_threshold_finds() -> None:
    # The sweep counts boxes above each threshold from one scan at the lowest; greedy NMS
    # makes that the same as scanning at each threshold.
    from templater.data import faces
    from templater.scan import scan

    train_set, val, test = prepare(TINY, 0, 3)
    net, _, _ = fit(TINY, train_set, val)
    m = detector_metrics(net, test, val, TINY.mine_scales)
    assert m["sweep"][0][1] < m["sweep"][-1][1]  # thresholds that differ in what they let by
    val_faces = net.score(val.x[val.kind == 0], exact=False)
    test_faces = net.score(test.x[test.kind == 0], exact=False)
    for r, (found, boxes) in zip(FACE_RECALL_SWEEP, m["sweep"], strict=True):
        t = face_threshold(val_faces, r)
        assert found == int(np.sum(test_faces > t))
        photos = faces.training_photo_names(test)
        assert boxes == sum(len(scan(net, faces.photo(p), TINY.mine_scales, 2, t)) for p in photos)


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("625-x-1", "sizes joined"),
        ("625--1", "sizes joined"),
        ("625-16", "hidden layer"),
        ("625-0-1", "at least 1 unit"),
        ("100-16-1", "625"),
        ("625-16-2", "1 output"),
        ("", "sizes joined"),
    ],
)
def test_bad_arch_is_refused(arch: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_arch(arch)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--arch", "625-16-x"], "sizes joined"),
        (["--arch", "400-16-1"], "625"),
        (["--epochs", "0"], "--epochs must be a positive"),
        (["--budget", "-5"], "--budget must be a positive"),
        (["--search", "random"], "needs --budget"),
        (["--bootstrap", "-1"], "--bootstrap"),
        (["--ensemble", "0"], "--ensemble must be an integer from 1"),
        (["--photo-windows", "0"], "--photo-windows must be a positive"),
        (["--validation-photo-folds", "4"], "--validation-photo-folds must be 1 to 3"),
        (["--face-recall", "1.5"], "--face-recall must be between 0 and 1"),
    ],
)
def test_cli_bad_input_gets_one_line_and_no_file(
    tmp_path: Path, args: list[str], message: str
) -> None:
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(main, ["train", *args, "-o", str(out)])
    assert result.exit_code == 2, result.output
    assert message in result.output
    if "needs --budget" not in message:
        assert result.output.count("\n") <= 2
    assert list(tmp_path.iterdir()) == []


def test_cli_unwritable_output_is_refused_before_training(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (tmp_path / "missing" / "m.npz", blocker / "m.npz", tmp_path):
        result = CliRunner().invoke(main, ["train", "--epochs", "1", "-o", str(out)])
        assert result.exit_code == 2 and "error" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


@pytest.mark.slow
@pytest.mark.parametrize(("flags", "arch"), [([], "625-16-1"), (["--mirror"], "625-32-1")])
def test_cli_trains_and_writes_four_files(tmp_path: Path, flags: list[str], arch: str) -> None:
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(
        main,
        ["train", "--epochs", "1", "--bootstrap", "0", "--seed", "3", *flags, "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in output_paths(out).values()
    )
    assert load(out).architecture == arch


@pytest.mark.slow
def test_compare_example_shows_sgd_ahead(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))
    try:
        import compare_search
    finally:
        sys.path.pop(0)
    png = tmp_path / "cmp.png"
    text = compare_search.main(["--budget", "150", "-o", str(png)])
    assert png.read_bytes()[:4] == b"\x89PNG"
    rows = {line.split("|")[1].strip(): float(line.split("|")[2]) for line in text.splitlines()[2:]}
    assert set(rows) == {"sgd", "random", "hillclimb"}
    assert rows["sgd"] < min(rows["random"], rows["hillclimb"])
    assert "sgd" in capsys.readouterr().out


def test_compare_refuses_a_bad_budget(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["compare", "--budget", "0", "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 2 and "--budget must be a positive" in result.output
    assert list(tmp_path.iterdir()) == []


def test_search_inputs_are_the_reference_normalisation_up_to_the_last_bits() -> None:
    # The search keeps the shipped model's arithmetic (left-to-right sums, a division per pixel);
    # it must still be the same normalisation as the programs', up to rounding.
    from templater.network import Normalization
    from templater.train import search_inputs

    norm = Normalization("window", 0.05)
    x = np.random.default_rng(0).random((200, 625))
    assert np.max(np.abs(search_inputs(norm, x) - norm.apply(x))) <= 1e-12
