"""Data-driven pruning: what it removes, what it changes (as `templater diff` reports it), and
when it refuses to write."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import templater
from templater.cli import main
from templater.prune import dead_on, prune

DIGITS = Path("generated/digits/model.npz")


@pytest.fixture()
def digits(tmp_path: Path) -> tuple[Path, Path]:
    """The digits split in two files: rows to prune on, rows held out."""
    from sklearn.datasets import load_digits

    x = load_digits().data / 16.0
    np.save(tmp_path / "prune.npy", x[:1200])
    np.save(tmp_path / "held.npy", x[1200:])
    return tmp_path / "prune.npy", tmp_path / "held.npy"


def test_pruned_model_is_unchanged_on_its_pruning_rows(digits):
    net = templater.load(DIGITS)
    x = np.load(digits[0])
    result = prune(DIGITS, str(digits[0]), max_flips=1000, held_out=str(digits[1]))
    assert result.removed >= 1
    removed = result.removals[0].neurons
    pre = net.normalization.apply(x) @ net.layers[0].weights + net.layers[0].bias
    assert not (pre[:, list(removed)] > 0).any()  # they never fire on the pruning rows
    assert result.pruned.layers[0].n_outputs == 16 - len(removed)
    assert np.array_equal(result.pruned.forward(x), net.forward(x))
    assert "pruned_on_data" in result.pruned.metadata  # labelled as data-driven


def test_prune_reports_the_numbers_diff_prints(digits, tmp_path):
    runner = CliRunner()
    out = tmp_path / "pruned.npz"
    pruned = runner.invoke(main, ["prune", str(DIGITS), "--data", str(digits[0]), "--held-out",
                                  str(digits[1]), "--max-flips", "1000", "-o", str(out)])
    assert pruned.exit_code == 0, pruned.output
    assert out.exists()
    diffed = runner.invoke(main, ["diff", str(DIGITS), str(out), "--data", str(digits[1]),
                                  "--summary"])
    assert diffed.exit_code == 1  # the programs differ
    ours = pruned.stdout.splitlines()
    start = next(k for k, line in enumerate(ours) if line.startswith("structure: "))
    assert ours[start:] == diffed.stdout.splitlines()
    assert any(line.startswith("  ") and "change class" in line for line in ours)


def test_prune_refuses_to_write_past_max_flips(tmp_path):
    from sklearn.datasets import load_digits

    x = load_digits().data / 16.0
    np.save(tmp_path / "few.npy", x[:1])  # one row: 4 neurons never fire on it
    np.save(tmp_path / "held.npy", x[200:])
    net = templater.load(DIGITS)
    assert sum(len(r.neurons) for r in dead_on(net, x[:1])) >= 3
    out = tmp_path / "pruned.npz"
    result = CliRunner().invoke(
        main, ["prune", str(DIGITS), "--data", str(tmp_path / "few.npy"), "--held-out",
               str(tmp_path / "held.npy"), "--max-flips", "0", "-o", str(out)],
    )
    assert result.exit_code == 1, result.output
    assert "decision(s) flip" in result.output and "more than --max-flips 0" in result.output
    assert not out.exists()


def test_prune_never_writes_over_its_input(tmp_path):
    model = tmp_path / "model.npz"
    model.write_bytes(DIGITS.read_bytes())
    result = CliRunner().invoke(
        main, ["prune", str(model), "--data", "random", "--max-flips", "5", "-o", str(model)]
    )
    assert result.exit_code == 2 and "is the input model" in result.output
    assert model.read_bytes() == DIGITS.read_bytes()


def test_prune_bad_data_exits_2(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((10, 3)))
    out = tmp_path / "pruned.npz"
    result = CliRunner().invoke(
        main, ["prune", str(DIGITS), "--data", str(tmp_path / "bad.npy"), "--max-flips", "0",
               "-o", str(out)],
    )
    assert result.exit_code == 2 and result.output.startswith("templater: error: ")
    assert not out.exists()
