"""Pictures as PNG bytes (matplotlib, Agg): training curves and first-layer weight images."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np


def _png(fig: object) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)  # type: ignore[arg-type]
    buf = io.BytesIO()
    # No Software tag: the bytes depend on the picture only, not on the matplotlib version.
    fig.savefig(buf, format="png", metadata={"Software": None})  # type: ignore[attr-defined]
    return buf.getvalue()


def curves_png(
    curves: Mapping[str, Sequence[tuple[int, float]]],
    title: str,
    xlabel: str = "programs evaluated (weight settings)",
    ylabel: str = "validation error",
) -> bytes:
    """One line per named curve of (x, y) points; log x axis when it spans decades."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    ax = fig.add_subplot()
    top = 0
    for name, points in curves.items():
        if points:
            xs, ys = zip(*points, strict=False)
            ax.plot(xs, ys, label=name, linewidth=1.5)
            top = max(top, max(xs))
    if top > 100:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return _png(fig)


def weights_png(weights: np.ndarray, shape: tuple[int, int], title: str) -> bytes:
    """Each column of `weights` (one hidden unit's input weights) as a `shape` image.

    Grey is zero; each unit has its own symmetric colour range, so its pattern shows even
    when its weights are small.
    """
    from matplotlib.figure import Figure

    n = weights.shape[1]
    cols = min(n, 8)
    rows = -(-n // cols)
    fig = Figure(figsize=(1.4 * cols, 1.5 * rows + 0.5), dpi=100)
    for j in range(rows * cols):
        ax = fig.add_subplot(rows, cols, j + 1)
        ax.set_axis_off()
        if j < n:
            img = weights[:, j].reshape(shape)
            lim = float(np.max(np.abs(img))) or 1.0
            ax.imshow(img, cmap="gray", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.set_title(f"unit {j}", fontsize=8)
    fig.suptitle(title)
    return _png(fig)


def windows_png(
    windows: np.ndarray, shape: tuple[int, int], titles: Sequence[str], title: str
) -> bytes:
    """Rows of `windows` as `shape` grey images in a grid, each with its title (0 black, 1 white
    for pixels in [0, 1]; other ranges are scaled per window)."""
    from matplotlib.figure import Figure

    n = len(windows)
    cols = max(1, min(n, 8))
    rows = max(1, -(-n // cols))
    fig = Figure(figsize=(1.5 * cols, 1.7 * rows + 0.6), dpi=100)
    for k in range(rows * cols):
        ax = fig.add_subplot(rows, cols, k + 1)
        ax.set_axis_off()
        if k < n:
            img = np.asarray(windows[k], dtype=np.float64).reshape(shape)
            lo, hi = (0.0, 1.0) if img.min() >= 0.0 and img.max() <= 1.0 else (img.min(), img.max())
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
            ax.set_title(titles[k], fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _png(fig)
