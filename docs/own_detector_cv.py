"""Cross-validation of the own detector's candidate recipes (folds by source; no evaluation photo).

    PYTHONPATH=. python docs/own_detector_cv.py RECIPE [SEED] > docs/own_detector_cv_RECIPE.json

RECIPE is one of CANDIDATES. Prints progress on stderr and the folds' metrics as JSON on stdout.
"""

import json
import sys
import time
from dataclasses import asdict, replace

from templater.own_train import ConvRecipe, cross_validate


def one_net(**changes) -> ConvRecipe:
    """A recipe of the candidates before ensembles: one net, 1 box/MP on the validation photos."""
    return replace(ConvRecipe(), members=1, fp_per_megapixel=1.0, **changes)


CANDIDATES = {
    # 18x18 window, stride 4: conv3-8, pool, conv3-16, pool, conv3-32, score 1x1; 3 rounds.
    "w18": one_net(rounds=3, split_seed=None),
    # 12x12 window, stride 2 (PNet's trunk): conv3-10, pool, conv3-16, conv3-32, score 1x1.
    "w12": one_net(
        channels=(10, 16, 32), pools=(True, False, False), rounds=3, split_seed=None
    ),
    # w18 with five bootstrapping rounds, the split by source following the seed.
    "w18r5": one_net(rounds=5, split_seed=None),
    # w18r5 whose last round returns the mean of its last 150 weights (Polyak averaging).
    "w18r5avg": one_net(rounds=5, average_last=150, split_seed=None),
    # w18r5 with its threshold set on two folds of face-free photos (about twice the megapixels).
    "w18r5v2": one_net(rounds=5, validation_photo_folds=2, split_seed=None),
    # w18 with eight bootstrapping rounds.
    "w18r8": one_net(rounds=8, split_seed=None),
    # w18r5 half as wide again: conv3-12, pool, conv3-24, pool, conv3-48.
    "w18r5wide": one_net(channels=(12, 24, 48), rounds=5, split_seed=None),
    # w18r5 whose split by source is seed 0's whatever the seed (the seed then changes only the
    # search: initial weights, augmentation, mini-batches); at seed 0 it is w18r5. The shipped
    # recipe before ens3h.
    "w18r5fixed": one_net(rounds=5, split_seed=0),
    # w18r5fixed searched three times (seeds 1000 * seed + k, k < 3, the same split) and scored
    # by the mean of the three logits: one ConvNetwork with grouped convolutions.
    "ens3": replace(one_net(rounds=5, split_seed=0), members=3),
    # ens3 with its threshold at half a box per megapixel of the validation photos: the shipped
    # recipe (ConvRecipe() defaults).
    "ens3h": ConvRecipe(rounds=5, split_seed=0, members=3, fp_per_megapixel=0.5),
}


def main() -> None:
    name = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    start = time.time()
    result = cross_validate(
        CANDIDATES[name],
        seed,
        progress=lambda m: print(f"{time.time() - start:7.1f}s {m}", file=sys.stderr, flush=True),
    )
    result.update(recipe=name, seed=seed, config=asdict(CANDIDATES[name]))
    result["seconds"] = round(time.time() - start, 1)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
