"""`templater train` and `compare`: the face model, its files, determinism and bad input."""

from __future__ import annotations

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
    TrainConfig,
    cross_validate,
    output_paths,
    parse_arch,
    train,
    write_outputs,
)

# Small enough to train in about a second; mining scans one small pyramid level.
TINY = TrainConfig(epochs=1, bootstrap=1, photo_windows=20, augment_copies=1, mine_scales=(0.25,))


def test_default_model_is_accurate_fast_and_well_formed(default_training) -> None:
    result, _ = default_training  # its time is measured in the README, never asserted
    assert result.metrics["test"]["accuracy"] >= 0.93
    assert result.metrics["test"]["roc_auc"] >= 0.9
    net = result.network
    assert net.architecture == "625-16-1" and net.input_shape == (25, 25)
    assert net.normalization.kind == "window"
    assert [d.activation.name for d in net.layers] == ["relu", "identity"]
    assert net.head.kind == "binary" and np.isfinite(net.head.threshold)
    assert result.metrics["hard_negatives_per_round"] and result.metrics["evaluations"] > 0
    json.dumps(net.metadata, allow_nan=False)


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


def test_same_seed_gives_a_byte_identical_model() -> None:
    a = to_bytes(train(TINY).network)
    b = to_bytes(train(TINY).network)
    c = to_bytes(train(TrainConfig(**{**TINY.__dict__, "seed": 1})).network)
    assert a == b and a != c


def test_cross_validation_reports_mean_and_spread() -> None:
    out = cross_validate(TrainConfig(epochs=1, bootstrap=0, photo_windows=20, augment_copies=1), 3)
    assert len(out["per_fold"]) == 3
    assert out["accuracy"]["min"] <= out["accuracy"]["mean"] <= out["accuracy"]["max"]
    assert out["accuracy"]["std"] >= 0.0


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


def test_cli_trains_and_writes_four_files(tmp_path: Path) -> None:
    out = tmp_path / "m.npz"
    result = CliRunner().invoke(
        main, ["train", "--epochs", "1", "--bootstrap", "0", "--seed", "3", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in output_paths(out).values()
    )


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
