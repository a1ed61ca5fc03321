"""Seed ensembles merged into one network: the merged score is the mean of the member scores."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from templater.ensemble import merge, mirror_average, mirrored
from templater.errors import UsageError
from templater.network import Dense, Head, Network, Normalization


def member(rng: np.random.Generator, hidden: tuple[int, ...] = (16,)) -> Network:
    sizes = (625, *hidden, 1)
    layers = tuple(
        Dense(
            rng.normal(0, 0.1, (a, b)),
            rng.normal(0, 0.5, b),
            "identity" if b == 1 else "relu",
        )
        for a, b in itertools.pairwise(sizes)
    )
    return Network(
        625, layers, Head("binary", 0.5), Normalization("window", 0.05), input_shape=(25, 25)
    )


@pytest.mark.parametrize(
    ("k", "hidden"), [(1, (16,)), (2, (16,)), (3, (8,)), (4, (16,)), (4, (8, 4))]
)
def test_merged_score_is_the_mean_of_the_member_scores(k: int, hidden: tuple[int, ...]) -> None:
    rng = np.random.default_rng(k)
    members = [member(rng, hidden) for _ in range(k)]
    windows = rng.random((300, 625))
    merged = merge(members)
    expected = np.mean([m.score(windows) for m in members], axis=0)
    assert np.max(np.abs(merged.score(windows) - expected)) <= 1e-12
    assert merged.architecture == "-".join(["625", *(str(n * k) for n in hidden), "1"])
    assert merged.head == members[0].head and merged.normalization == members[0].normalization


def test_power_of_two_output_weights_are_divided_exactly() -> None:
    rng = np.random.default_rng(7)
    members = [member(rng) for _ in range(4)]
    out = merge(members).layers[-1].weights
    assert np.array_equal(out * 4.0, np.concatenate([m.layers[-1].weights for m in members]))


def test_one_member_is_returned_unchanged() -> None:
    net = member(np.random.default_rng(1))
    assert merge([net]).digest() == net.digest()


def test_members_that_cannot_be_averaged_are_refused() -> None:
    rng = np.random.default_rng(2)
    a, deep = member(rng), member(rng, (8, 4))
    with pytest.raises(UsageError, match="depth"):
        merge([a, deep])
    with pytest.raises(UsageError, match="at least one"):
        merge([])
    sigmoid_out = a.with_layers(
        (a.layers[0], Dense(a.layers[1].weights, a.layers[1].bias, "sigmoid"))
    )
    with pytest.raises(UsageError, match="identity output"):
        merge([sigmoid_out, sigmoid_out])


def flipped(windows: np.ndarray) -> np.ndarray:
    return windows.reshape(-1, 25, 25)[:, :, ::-1].reshape(-1, 625)


def test_a_mirrored_network_scores_each_window_as_the_original_scores_its_mirror_image() -> None:
    rng = np.random.default_rng(5)
    net, windows = member(rng), rng.random((300, 625))
    # The flip reorders the first layer's sums, so the scores agree up to rounding, not bit for bit.
    assert np.max(np.abs(mirrored(net).score(windows) - net.score(flipped(windows)))) <= 1e-12
    assert np.max(np.abs(mirrored(net).score(windows) - net.score(windows))) > 0.1


def test_the_mirror_average_scores_a_window_and_its_mirror_image_alike() -> None:
    rng = np.random.default_rng(6)
    net, windows = member(rng), rng.random((300, 625))
    both = mirror_average(net, name="sym")
    assert both.architecture == "625-32-1" and both.name == "sym"
    expected = (net.score(windows) + net.score(flipped(windows))) / 2.0
    assert np.max(np.abs(both.score(windows) - expected)) <= 1e-12
    assert np.max(np.abs(both.score(windows) - both.score(flipped(windows)))) <= 1e-12
    # Pixel (r, c) of the first member reads like pixel (r, 24 - c) of the second.
    w = both.layers[0].weights.reshape(25, 25, 32)
    assert np.array_equal(w[:, :, 16:], w[:, ::-1, :16])


def test_a_network_without_a_2d_window_cannot_be_mirrored() -> None:
    net = member(np.random.default_rng(7))
    flat = Network(625, net.layers, net.head, net.normalization)
    with pytest.raises(UsageError, match="2-D windows"):
        mirrored(flat)
