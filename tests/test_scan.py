"""The reference scan: pyramid formula, windows, boxes and non-maximum suppression."""

from __future__ import annotations

import math

import numpy as np
import pytest

from templater.errors import UsageError
from templater.network import Dense, Head, Network, Normalization
from templater.scan import (
    blur,
    blur_numpy,
    blur_weights,
    candidates,
    iou,
    non_max_suppression,
    pyramid_level,
    scan,
    windows,
)


def _loop_blur(img: np.ndarray, s: float) -> np.ndarray:
    """The anti-aliasing blur of the module docstring, written as the ported loop would be."""
    sigma = (1.0 / s - 1.0) / 2.0
    radius = int(4.0 * sigma + 0.5) if sigma > 0.0 else 0
    if radius == 0:
        return img
    e = [math.exp(-0.5 * (k / sigma) * (k / sigma)) for k in range(-radius, radius + 1)]
    total = 0.0
    for v in e:
        total += v
    weights = [v / total for v in e]

    def mirrored(i: int, n: int) -> int:
        while not 0 <= i < n:
            i = -i if i < 0 else 2 * (n - 1) - i
        return i

    h, w = img.shape
    across = np.empty((h, w))
    for r in range(h):
        for c in range(w):
            acc = 0.0
            for k in range(-radius, radius + 1):
                acc += weights[k + radius] * img[r, mirrored(c + k, w)]
            across[r, c] = acc
    out = np.empty((h, w))
    for r in range(h):
        for c in range(w):
            acc = 0.0
            for k in range(-radius, radius + 1):
                acc += weights[k + radius] * across[mirrored(r + k, h), c]
            out[r, c] = acc
    return out


def _loop_level(img: np.ndarray, s: float) -> np.ndarray:
    """The pyramid formula of the module docstring, written as the ported loop would be."""
    img = _loop_blur(img, s)
    h, w = img.shape
    ho, wo = math.floor(h * s), math.floor(w * s)
    out = np.empty((ho, wo))
    for r in range(ho):
        y = min(max((r + 0.5) / s - 0.5, 0.0), h - 1.0)
        y0 = math.floor(y)
        y1 = min(y0 + 1, h - 1)
        fy = y - y0
        for c in range(wo):
            x = min(max((c + 0.5) / s - 0.5, 0.0), w - 1.0)
            x0 = math.floor(x)
            x1 = min(x0 + 1, w - 1)
            fx = x - x0
            top = img[y0, x0] + fx * (img[y0, x1] - img[y0, x0])
            bot = img[y1, x0] + fx * (img[y1, x1] - img[y1, x0])
            out[r, c] = top + fy * (bot - top)
    return out


@pytest.mark.parametrize("s", [1.0, 0.8, 0.64, 0.5, 0.37, 1.3])
def test_pyramid_level_is_the_documented_loop_bit_for_bit(s: float) -> None:
    img = np.random.default_rng(0).random((41, 53))
    level = pyramid_level(img, s)
    assert level.shape == (math.floor(41 * s), math.floor(53 * s))
    assert np.array_equal(level, _loop_level(img, s))


@pytest.mark.parametrize("s", [0.8, 0.5, 0.25, 0.2])
def test_the_blur_is_the_gaussian_skimage_rescale_uses(s: float) -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    img = np.random.default_rng(2).random((40, 33))
    expected = ndimage.gaussian_filter(img, (1.0 / s - 1.0) / 2.0, mode="mirror")
    assert np.allclose(blur(img, blur_weights(s)), expected, rtol=0, atol=1e-15)
    assert blur_weights(1.0) == [] and blur_weights(1.5) == []


def test_the_numba_blur_is_the_numpy_blur_bit_for_bit() -> None:
    """scan.blur's numba kernel (radius below both sides) against blur_numpy, its definition:
    thin images, radius one below a side, and radii over a side (numpy's repeated reflection)."""
    rng = np.random.default_rng(5)
    for h, w, s in [(41, 53, 0.37), (3, 200, 0.3), (200, 3, 0.3), (19, 19, 0.1), (8, 9, 0.05),
                    (64, 48, 0.2), (1, 30, 0.5), (30, 2, 0.45)]:
        img = rng.random((h, w))
        weights = blur_weights(s)
        assert np.array_equal(blur(img, weights), blur_numpy(img, weights)), (h, w, s)


def test_the_blur_smooths_what_a_shrink_would_alias() -> None:
    # A one-pixel checkerboard at s = 0.5 samples to a flat grey once blurred, but to stripes
    # of 0 and 1 without the blur.
    board = (np.indices((60, 60)).sum(axis=0) % 2).astype(float)
    level = pyramid_level(board, 0.5)
    assert level.std() < 0.02 and abs(level.mean() - 0.5) < 0.01


def test_scale_one_is_the_image() -> None:
    img = np.random.default_rng(1).random((30, 31))
    assert np.array_equal(pyramid_level(img, 1.0), img)


def test_windows_are_row_major_and_strided() -> None:
    level = np.arange(30 * 29, dtype=float).reshape(30, 29)
    pos, pix = windows(level, stride=2)
    assert [tuple(p) for p in pos] == [(r, c) for r in (0, 2, 4) for c in (0, 2, 4)]
    assert np.array_equal(pix[4], level[2:27, 2:27].ravel())
    assert windows(level[:20], 2)[0].shape == (0, 2)


def _center_net(threshold: float = 0.0) -> Network:
    """Scores a window by its central pixel minus its mean (after window normalisation)."""
    w = np.zeros((625, 1))
    w[12 * 25 + 12, 0] = 1.0
    return Network(
        625,
        (Dense(w, np.zeros(1)),),
        head=Head("binary", threshold),
        normalization=Normalization("window"),
        input_shape=(25, 25),
    )


def test_a_bright_dot_is_found_once_at_the_right_place() -> None:
    img = np.zeros((60, 60))
    img[30, 40] = 1.0
    boxes = scan(_center_net(5.0), img, scales=(1.0,), stride=1)
    assert boxes.shape == (1, 4)
    row, col, size, score = boxes[0]
    assert (row + 12, col + 12, size) == (30, 40, 25) and score > 5.0


def test_boxes_are_in_original_coordinates() -> None:
    img = np.zeros((100, 100))
    img[48:52, 48:52] = 1.0
    found = candidates(_center_net(3.0), img, scales=(0.5,), stride=1)
    assert len(found)
    assert np.all(found[:, 2] == 50.0)
    assert np.all(found[:, :2] == np.round(found[:, :2] / 2) * 2)  # r / s with s = 0.5


def test_non_max_suppression_is_greedy_and_stable() -> None:
    boxes = np.array(
        [
            [0, 0, 10, 0.5],
            [1, 1, 10, 0.9],  # overlaps the first heavily: suppresses it
            [50, 50, 10, 0.9],  # same score as the second: keeps its later place
            [0, 8, 10, 0.7],  # IoU with the second is small
        ]
    )
    kept = non_max_suppression(boxes, 0.3)
    assert kept.tolist() == [[1, 1, 10, 0.9], [50, 50, 10, 0.9], [0, 8, 10, 0.7]]
    assert iou(np.array([0, 0, 10]), np.array([[0, 0, 10.0]]))[0] == 1.0
    assert non_max_suppression(np.zeros((0, 4))).shape == (0, 4)


def test_bad_images_and_models_are_refused() -> None:
    net = _center_net()
    with pytest.raises(UsageError, match="2-D"):
        scan(net, np.zeros((30, 30, 3)))
    with pytest.raises(UsageError, match="NaN"):
        scan(net, np.full((30, 30), np.nan))
    with pytest.raises(UsageError, match="stride"):
        scan(net, np.zeros((30, 30)), stride=0)
    small = Network(4, (Dense(np.ones((4, 1)), np.zeros(1)),))
    with pytest.raises(UsageError, match="625 inputs"):
        scan(small, np.zeros((30, 30)))
