"""The reference face scan: image pyramid, sliding windows, scores, non-maximum suppression.

This module is the living definition of `find_faces` in the generated programs; a port must
return the same boxes. Every convention, in the order the scan applies them:

Image. A 2-D float array (H, W), grayscale, values in [0, 1] (see `templater.data.faces.gray`).

Pyramid. For each scale s in `scales`, in the given order, the level has
`Ho = floor(H * s)` rows and `Wo = floor(W * s)` columns (the products taken in float64). A level
with `Ho < 25` or `Wo < 25` is skipped.

Anti-aliasing. Shrinking by s < 1 first blurs the image with a Gaussian of
`sigma = (1.0 / s - 1.0) / 2.0`, the rule of `skimage.transform.rescale`: without it a face of
100 pixels reaches the 25x25 window sharper, and aliased, unlike the training faces. The kernel
has radius `R = int(4.0 * sigma + 0.5)` (no blur when sigma <= 0 or R == 0); its weights are
`e_k = math.exp(-0.5 * (k / sigma) * (k / sigma))` for k = -R..R, each divided by their sum (added
in that order). The blur runs along each row, then along each column of that result:
`out[i] = sum_k w_k * in[reflect(i + k)]`, added from k = -R up, starting at 0.0, where
`reflect` mirrors about the edge pixels (-1 -> 1, n -> n - 2). Level pixel (r, c) then samples
the blurred image I bilinearly at

    y = min(max((r + 0.5) / s - 0.5, 0), H - 1)
    x = min(max((c + 0.5) / s - 0.5, 0), W - 1)
    y0 = floor(y); x0 = floor(x); y1 = min(y0 + 1, H - 1); x1 = min(x0 + 1, W - 1)
    fy = y - y0;  fx = x - x0
    top = I[y0, x0] + fx * (I[y0, x1] - I[y0, x0])
    bot = I[y1, x0] + fx * (I[y1, x1] - I[y1, x0])
    level[r, c] = top + fy * (bot - top)

(exactly these float64 operations, in this order). At s = 1 the level equals the image.

Windows. 25 x 25 windows at rows r = 0, stride, 2*stride, ... while r + 25 <= Ho, and the same
for columns; enumerated row-major (r outer, c inner); each window flattened row-major into 625
inputs. The network applies its stored input normalisation to each window itself.

Scores. `net.forward(windows, exact)[:, 0]`; a window is kept when `score > threshold`
(strictly; the default threshold is the model's head threshold).

Boxes. A kept window at (r, c) of the level of scale s becomes the box
`(row, col, size, score) = (r / s, c / s, 25 / s, score)` in original-image pixels (float64).
Candidates are listed level by level, in window order.

Non-maximum suppression. Candidates sorted by score, descending, stable (ties keep the candidate
order). Greedily: the first remaining box is kept and every later box whose IoU with it is
strictly greater than `overlap` (default 0.3) is dropped. IoU of two squares:
`inter = max(0, min(r1+s1, r2+s2) - max(r1, r2)) * max(0, min(c1+s1, c2+s2) - max(c1, c2))`,
`iou = inter / (s1*s1 + s2*s2 - inter)`. The result lists the kept boxes in that sorted order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from templater.errors import UsageError
from templater.network import Network
from templater.scan_defaults import DEFAULT_OVERLAP, DEFAULT_SCALES, DEFAULT_STRIDE

WINDOW = 25
# Windows scored per call to net.forward: bounds memory (4096 * 625 * 8 bytes = 20 MB).
CHUNK = 4096


def check_image(image: object) -> np.ndarray:
    """The image as a float64 (H, W) array, or a UsageError saying what is wrong."""
    arr = np.asarray(image)
    if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
        raise UsageError(f"image must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise UsageError(f"image must be 2-D grayscale (H, W), got shape {arr.shape}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise UsageError("image contains NaN or infinite pixels")
    return arr


def blur_weights(s: float) -> list[float]:
    """The anti-aliasing kernel for scale `s`, taps -R..R ([] when no blur is needed)."""
    sigma = (1.0 / s - 1.0) / 2.0
    radius = int(4.0 * sigma + 0.5) if sigma > 0.0 else 0
    if radius == 0:
        return []
    taps = [math.exp(-0.5 * (k / sigma) * (k / sigma)) for k in range(-radius, radius + 1)]
    total = 0.0
    for t in taps:
        total += t
    return [t / total for t in taps]


def blur(image: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """`image` blurred along rows, then columns, by the kernel `weights` (docstring order).
    Through the numba kernel of `scan_blur` (the same sums, 10-20x faster) where the radius is
    below both sides; numpy otherwise (`blur_numpy`, the definition it is tested against)."""
    radius = len(weights) // 2
    if 0 < radius < min(image.shape):
        from templater.scan_blur import blur_rows_then_columns

        kernel = np.asarray(weights, dtype=np.float64)
        return blur_rows_then_columns(np.ascontiguousarray(image, dtype=np.float64), kernel)
    return blur_numpy(image, weights)


def blur_numpy(image: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """`blur` in numpy: np.pad's 'reflect' and one gather per tap."""
    radius = len(weights) // 2
    out = image
    for axis in (1, 0):
        n = out.shape[axis]
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="reflect")  # mirrored about the edge pixels
        acc = np.zeros_like(out)
        for k, wk in enumerate(weights):
            acc = acc + wk * np.take(padded, np.arange(k, k + n), axis=axis)
        out = acc
    return out


def pyramid_level(image: np.ndarray, s: float) -> np.ndarray:
    """The image blurred and resampled at scale `s` (the module docstring's exact formula)."""
    img = check_image(image)
    if not (math.isfinite(s) and s > 0.0):
        raise UsageError(f"scale must be a positive number, got {s!r}")
    weights = blur_weights(s)
    return bilinear(blur(img, weights) if weights else img, s)


def bilinear(img: np.ndarray, s: float) -> np.ndarray:
    """`img` (float64, 2-D) sampled bilinearly at scale `s`, with no blur (docstring formula)."""
    h, w = img.shape
    ho, wo = math.floor(h * s), math.floor(w * s)
    y = np.minimum(np.maximum((np.arange(ho) + 0.5) / s - 0.5, 0.0), h - 1.0)
    x = np.minimum(np.maximum((np.arange(wo) + 0.5) / s - 0.5, 0.0), w - 1.0)
    y0 = np.floor(y).astype(np.intp)
    x0 = np.floor(x).astype(np.intp)
    y1 = np.minimum(y0 + 1, h - 1)
    x1 = np.minimum(x0 + 1, w - 1)
    fy = (y - y0)[:, None]
    fx = (x - x0)[None, :]
    a, b = img[y0][:, x0], img[y0][:, x1]
    c, d = img[y1][:, x0], img[y1][:, x1]
    top = a + fx * (b - a)
    bot = c + fx * (d - c)
    return top + fy * (bot - top)


def windows(level: np.ndarray, stride: int = DEFAULT_STRIDE) -> tuple[np.ndarray, np.ndarray]:
    """All 25x25 windows of a level: positions (n, 2) as (r, c) and pixels (n, 625), row-major."""
    _check_stride(stride)
    ho, wo = level.shape
    if ho < WINDOW or wo < WINDOW:
        return np.zeros((0, 2), dtype=np.intp), np.zeros((0, WINDOW * WINDOW))
    rows = np.arange(0, ho - WINDOW + 1, stride)
    cols = np.arange(0, wo - WINDOW + 1, stride)
    view = np.lib.stride_tricks.sliding_window_view(level, (WINDOW, WINDOW))
    pixels = view[rows][:, cols].reshape(-1, WINDOW * WINDOW)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    positions = np.stack([rr.ravel(), cc.ravel()], axis=1)
    return positions, np.ascontiguousarray(pixels, dtype=np.float64)


def window_positions(level: np.ndarray, stride: int = DEFAULT_STRIDE) -> np.ndarray:
    """The (r, c) of every window of a level, row-major, as `windows` lists them."""
    _check_stride(stride)
    ho, wo = level.shape
    rows = np.arange(0, ho - WINDOW + 1, stride)
    cols = np.arange(0, wo - WINDOW + 1, stride)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    return np.stack([rr.ravel(), cc.ravel()], axis=1)


def window_scores(
    net: Network, pixels: np.ndarray, exact: bool = False, dtype: Any = np.float64
) -> np.ndarray:
    """The score of every window, computed in chunks of CHUNK windows (in `dtype`)."""
    out = np.empty(pixels.shape[0], dtype=dtype)
    for start in range(0, pixels.shape[0], CHUNK):
        chunk = pixels[start : start + CHUNK]
        out[start : start + CHUNK] = net.forward(chunk, exact=exact, dtype=dtype)[:, 0]
    return out


def level_scores(net: Network, level: np.ndarray, stride: int = DEFAULT_STRIDE) -> np.ndarray:
    """The score of every window of a level, in `windows` order, without cutting windows out.

    The first layer of a scan is a correlation of the level with each hidden unit's 25x25
    weights, and the window normalisation is affine per window, so
    `pre_j = (corr_j - mean * sum(w_j)) / (std + eps) + b_j`, with means and variances from
    summed-area tables. Computed with FFTs in float64: agrees with `net.forward(...,
    exact=False)` to ~1e-12, not bit for bit (use `window_scores(..., exact=True)` for that).
    """
    ho, wo = level.shape
    if ho < WINDOW or wo < WINDOW:
        return np.zeros(0)
    first = net.layers[0]
    k, n_hidden = WINDOW, first.n_outputs
    shape = (_fast_length(ho + k - 1), _fast_length(wo + k - 1))
    filters = first.weights.reshape(k, k, n_hidden)[::-1, ::-1, :]  # flipped: correlation
    spectrum = np.fft.rfft2(level, s=shape)[:, :, None]
    spectrum = spectrum * np.fft.rfft2(filters, s=shape, axes=(0, 1))
    full = np.fft.irfft2(spectrum, s=shape, axes=(0, 1))
    corr = full[k - 1 : ho, k - 1 : wo][::stride, ::stride].reshape(-1, n_hidden)
    norm = net.normalization
    if norm.kind == "window":
        sums, squares = (_window_sums(a, k)[::stride, ::stride].ravel() for a in (level, level**2))
        mean = sums / (k * k)
        std = np.sqrt(np.maximum(squares / (k * k) - mean * mean, 0.0))
        pre = (corr - mean[:, None] * first.weights.sum(axis=0)) / (std + norm.eps)[:, None]
    else:
        pre = corr
    h = first.activation.apply(pre + first.bias)
    for layer in net.layers[1:]:
        h = layer.apply(h, exact=False)
    return h[:, 0]


def _fast_length(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: FFTs of such lengths are fast (primes are slow)."""
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            candidate = p35 << max(0, (n - 1) // p35).bit_length() if p35 < n else p35
            best = min(best, candidate)
            p35 *= 3
        p5 *= 5
    return best


def _window_sums(a: np.ndarray, k: int) -> np.ndarray:
    """Sums of every k x k window of `a` (valid positions), from a summed-area table."""
    table = np.zeros((a.shape[0] + 1, a.shape[1] + 1))
    table[1:, 1:] = a.cumsum(axis=0).cumsum(axis=1)
    return table[k:, k:] - table[:-k, k:] - table[k:, :-k] + table[:-k, :-k]


def candidates(
    net: Network,
    image: np.ndarray,
    scales: Sequence[float] = DEFAULT_SCALES,
    stride: int = DEFAULT_STRIDE,
    threshold: float | None = None,
    exact: bool = False,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Every window scoring above the threshold as a box (row, col, size, score), before NMS.

    `dtype=np.float32` (with `exact=True`): the reference of float32 programs' find_faces; the
    pyramid stays float64, windows, scores and the threshold are rounded to float32."""
    _check_net(net)
    img = check_image(image)
    thr = net.head.threshold if threshold is None else float(threshold)
    if np.dtype(dtype) != np.float64:
        if not exact:
            raise UsageError("a float32 scan is a reference: it needs exact=True")
        thr = float(np.dtype(dtype).type(thr))
    found = []
    for s in scales:
        level = pyramid_level(img, float(s))
        if exact:
            positions, pixels = windows(level, stride)
            scores = window_scores(net, pixels, exact=True, dtype=dtype)
        else:
            positions = window_positions(level, stride)
            scores = level_scores(net, level, stride)
        if not len(positions):
            continue
        keep = scores > thr
        pos = positions[keep].astype(np.float64)
        s = float(s)
        found.append(
            np.stack(
                [pos[:, 0] / s, pos[:, 1] / s, np.full(pos.shape[0], WINDOW / s), scores[keep]],
                axis=1,
            )
        )
    return np.concatenate(found) if found else np.zeros((0, 4))


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of square box `a` (row, col, size, ...) with each row of `b`."""
    dr = np.maximum(0.0, np.minimum(a[0] + a[2], b[:, 0] + b[:, 2]) - np.maximum(a[0], b[:, 0]))
    dc = np.maximum(0.0, np.minimum(a[1] + a[2], b[:, 1] + b[:, 2]) - np.maximum(a[1], b[:, 1]))
    inter = dr * dc
    return inter / (a[2] * a[2] + b[:, 2] * b[:, 2] - inter)


def non_max_suppression(boxes: np.ndarray, overlap: float = DEFAULT_OVERLAP) -> np.ndarray:
    """Greedy NMS: by score descending (stable), drop boxes with IoU > overlap with a kept one."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    order = np.argsort(-boxes[:, 3], kind="stable")
    ordered = boxes[order]
    alive = np.ones(len(ordered), dtype=bool)
    for i in range(len(ordered)):
        if alive[i] and i + 1 < len(ordered):
            alive[i + 1 :] &= ~(iou(ordered[i], ordered[i + 1 :]) > overlap)
    return ordered[alive]


def scan(
    net: Network,
    image: np.ndarray,
    scales: Sequence[float] = DEFAULT_SCALES,
    stride: int = DEFAULT_STRIDE,
    threshold: float | None = None,
    overlap: float = DEFAULT_OVERLAP,
    exact: bool = False,
    dtype: Any = np.float64,
) -> np.ndarray:
    """Faces in a grayscale image as an (n, 4) array of (row, col, size, score), best first."""
    found = candidates(net, image, scales, stride, threshold, exact, dtype)
    return non_max_suppression(found, overlap)


def _check_stride(stride: object) -> None:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise UsageError(f"stride must be a positive integer, got {stride!r}")


def _check_net(net: Network) -> None:
    if net.input_size != WINDOW * WINDOW or net.n_outputs != 1 or net.head.kind != "binary":
        raise UsageError(
            f"scanning needs a binary model with {WINDOW * WINDOW} inputs (25x25 windows); "
            f"this one is {net.architecture} with a {net.head.kind} head"
        )
