"""The scan's anti-aliasing blur as a numba kernel: the same sums as `scan.blur`'s numpy
definition (each output 0.0 plus `w_k * in[reflect(i + k)]` from k = -R up, rows first, then
columns), so the same bits, without numpy's padded copy and gather per tap.

Only for R < the image's smaller side, where np.pad's 'reflect' mirrors once about the edge
pixels (-1 -> 1, n -> n - 2); `scan.blur` keeps numpy for the rest."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _add_taps(source, weights, out):
    # out[j] = 0.0 + sum_k weights[k] * source[reflect(j + k - R)], k ascending
    n = source.shape[0]
    radius = weights.shape[0] // 2
    for j in range(n):
        out[j] = 0.0
    for k in range(weights.shape[0]):
        w = weights[k]
        shift = k - radius
        lo = max(0, -shift)  # j + shift >= 0 from here
        hi = min(n, n - shift)  # j + shift < n below here
        for j in range(lo):
            out[j] += w * source[-(j + shift)]
        inner = source[lo + shift : hi + shift]
        part = out[lo:hi]
        for t in range(hi - lo):
            part[t] += w * inner[t]
        for j in range(hi, n):
            out[j] += w * source[2 * (n - 1) - (j + shift)]


@njit(cache=True)
def blur_rows_then_columns(image, weights):
    """`image` (float64, 2-D, both sides > R) blurred along rows, then along columns."""
    rows, cols = image.shape
    radius = weights.shape[0] // 2
    along_rows = np.empty((rows, cols))
    for i in range(rows):
        _add_taps(image[i], weights, along_rows[i])
    out = np.zeros((rows, cols))
    for i in range(rows):
        target = out[i]
        for k in range(weights.shape[0]):
            q = i + k - radius
            if q < 0:
                q = -q
            elif q >= rows:
                q = 2 * (rows - 1) - q
            w = weights[k]
            source = along_rows[q]
            for j in range(cols):
                target[j] += w * source[j]
    return out
