"""How sharp the scan's windows are next to the training faces (README, "The face detector").

    python docs/pyramid_sharpness.py

The scan's pyramid (`scan.pyramid_level`) resamples bilinearly without smoothing first, so at
small scales it samples a few pixels of every 1/s x 1/s patch and keeps detail an anti-aliased
resize would blur. This prints the 10th, 50th and 90th percentiles of a window's high-frequency
energy (mean absolute discrete Laplacian of the window as the network normalises it) for the lfw
faces and non-faces, and for 300 random windows of a face-free photo, cut from the scan's
pyramid and from `skimage.transform.rescale(..., anti_aliasing=True)` at the same scale.
"""

import numpy as np
from skimage import data, transform

from templater.data.faces import photo
from templater.scan import WINDOW, pyramid_level

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
    print(f"  lfw faces                      {spread(list(lfw[:100]))}")
    print(f"  lfw non-faces                  {spread(list(lfw[100:]))}")
    image = photo("chelsea")
    for scale in (0.5, 0.25):
        rng = np.random.default_rng(0)
        scanned = random_windows(pyramid_level(image, scale), 300, rng)
        smooth = random_windows(transform.rescale(image, scale, anti_aliasing=True), 300, rng)
        print(f"  chelsea at {scale:<4}  scan pyramid  {spread(scanned)}")
        print(f"  chelsea at {scale:<4}  anti-aliased  {spread(smooth)}")


if __name__ == "__main__":
    main()
