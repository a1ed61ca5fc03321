"""Time the two ways of taking a window's statistics.

See docs/decisions.md, "Window statistics in 8 lanes".

    python docs/window_stats_timing.py

Both forms run in an njit loop over 200 random 625-pixel windows (L2-resident), 100 passes;
prints the median ns per window of 9 runs. `sequential` is the old reference (one running sum,
a division per pixel); `lanes` is the current one (network.lane_sum, one reciprocal).
"""

import math
import time

import numpy as np
from numba import njit


@njit
def sequential(x, xn):
    total = 0.0
    for i in range(625):
        total = total + x[i]
    mean = total / 625.0
    squares = 0.0
    for i in range(625):
        d = x[i] - mean
        xn[i] = d
        squares = squares + d * d
    scale = math.sqrt(squares / 625.0) + 0.05
    for i in range(625):
        xn[i] = xn[i] / scale
    return scale


@njit
def lanes(x, xn):
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
    for i in range(0, 624, 8):
        t0 += x[i]
        t1 += x[i + 1]
        t2 += x[i + 2]
        t3 += x[i + 3]
        t4 += x[i + 4]
        t5 += x[i + 5]
        t6 += x[i + 6]
        t7 += x[i + 7]
    mean = (((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7)) + x[624]) / 625.0
    t0 = t1 = t2 = t3 = t4 = t5 = t6 = t7 = 0.0
    for i in range(0, 624, 8):
        for k in range(8):
            xn[i + k] = x[i + k] - mean
        t0 += xn[i] * xn[i]
        t1 += xn[i + 1] * xn[i + 1]
        t2 += xn[i + 2] * xn[i + 2]
        t3 += xn[i + 3] * xn[i + 3]
        t4 += xn[i + 4] * xn[i + 4]
        t5 += xn[i + 5] * xn[i + 5]
        t6 += xn[i + 6] * xn[i + 6]
        t7 += xn[i + 7] * xn[i + 7]
    xn[624] = x[624] - mean
    squares = ((t0 + t1) + (t2 + t3)) + ((t4 + t5) + (t6 + t7)) + xn[624] * xn[624]
    inv = 1.0 / (math.sqrt(squares / 625.0) + 0.05)
    for i in range(625):
        xn[i] = xn[i] * inv
    return inv


@njit
def passes(form, windows, xn):
    total = 0.0
    for _ in range(100):
        for r in range(windows.shape[0]):
            total += form(windows[r], xn)
    return total


def main() -> None:
    windows = np.random.default_rng(0).random((200, 625))
    xn = np.empty(625)
    for form in (sequential, lanes):
        passes(form, windows, xn)  # compile
        runs = []
        for _ in range(9):
            start = time.perf_counter()
            passes(form, windows, xn)
            runs.append(time.perf_counter() - start)
        print(f"{form.__name__:10s} {np.median(runs) / 20_000 * 1e9:7.0f} ns per window")


if __name__ == "__main__":
    main()
