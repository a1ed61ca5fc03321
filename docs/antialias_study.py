"""Cross-validation of the face recipe with an anti-aliased scan pyramid (README, "The face
detector"): a study, not the shipped scan.

    python docs/antialias_study.py [--seed S] [--mirror]

Every pyramid level (the photo windows, the mined false positives, the thresholds and the
scans of the test folds) is taken after a Gaussian blur of sigma (1/s - 1) / 2, the rule
`skimage.transform.rescale` uses against aliasing, and then resampled as `scan.pyramid_level`
does. It prints `templater train --folds 5`'s detector results for the shipped recipe (or the
one the flags give) under that pyramid. The programs' `_resample` is not changed, so a model
trained this way does not yet match its own compiled scan.
"""

import argparse
import json

from scipy import ndimage

from templater import scan
from templater import train as training
from templater.data import faces

plain_level = scan.pyramid_level


def smoothed_level(image, s):
    img = scan.check_image(image)
    sigma = max(0.0, (1.0 / s - 1.0) / 2.0)
    if sigma > 0:
        img = ndimage.gaussian_filter(img, sigma, mode="mirror")
    return plain_level(img, s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mirror", action="store_true")
    args = parser.parse_args()
    # Both modules look the function up at call time, so every scan below uses the blur.
    scan.pyramid_level = smoothed_level
    faces.pyramid_level = smoothed_level
    config = training.TrainConfig(seed=args.seed, mirror=args.mirror)
    result = training.cross_validate(
        config, 5, progress=lambda k, acc: print(f"fold {k}: accuracy {acc:.4f}", flush=True)
    )
    print(json.dumps(result["detector"], indent=1))


if __name__ == "__main__":
    main()
