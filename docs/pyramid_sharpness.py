"""How sharp the scan's windows are next to the training faces (docs/face-detector.md).

    python docs/pyramid_sharpness.py

Shrinking an image by sampling it bilinearly keeps a few pixels of every 1/s x 1/s patch, so a
window at a small scale keeps detail, and aliasing, that the training faces do not have; the
scan's pyramid (`scan.pyramid_level`) therefore blurs first. This prints the 10th, 50th and 90th
percentiles of a window's high-frequency energy (mean absolute discrete Laplacian of the window
as the network normalises it) for the lfw faces and non-faces, and for 300 random windows of a
face-free photo, cut at the same scale from plain bilinear sampling (`scan.bilinear`), from the
scan's pyramid and from `skimage.transform.rescale(..., anti_aliasing=True)`.
"""

import numpy as np
from skimage import data, transform

from templater.data.faces import photo
from templater.scan import WINDOW, bilinear, pyramid_level

EPS = 0.05  # the face model's normalisation floor
PERCENTILES = (10, 50, 90)


def high_frequency(window: np.ndarray) -> float:
    w = (window - window.mean()) / (window.std() + EPS)
    lap = 4 * w[1:-1, 1:-1] - w[:-2, 1:-1] - w[2:, 1:-1] - w[1:-1, :-2] - w[1:-1, 2:]
    return float(np.abs(lap).mean())


def random_windows(level: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    rows = rng.integers(level.shape[0] - WINDOW + 1, size=n)
    cols = rng.integers(level.shape[1] - WINDOW + 1, size=n)
    return [level[r : r + WINDOW, c : c + WINDOW] for r, c in zip(rows, cols, strict=True)]


def spread(windows: list[np.ndarray]) -> str:
    values = np.percentile([high_frequency(w) for w in windows], PERCENTILES)
    return " ".join(f"{v:.2f}" for v in values)


def main() -> None:
    lfw = np.asarray(data.lfw_subset(), dtype=np.float64)
    print(f"percentiles {PERCENTILES} of the high-frequency energy of a window")
    print(f"  {'lfw faces':<34}{spread(list(lfw[:100]))}")
    print(f"  {'lfw non-faces':<34}{spread(list(lfw[100:]))}")
    image = photo("chelsea")
    for scale in (0.5, 0.25):
        levels = {
            "bilinear only": bilinear(image, scale),
            "scan pyramid": pyramid_level(image, scale),
            "skimage rescale": transform.rescale(image, scale, anti_aliasing=True),
        }
        for name, level in levels.items():
            rng = np.random.default_rng(0)  # the same window positions in each
            print(f"  chelsea at {scale:<4}  {name:<15}  {spread(random_windows(level, 300, rng))}")


if __name__ == "__main__":
    main()
