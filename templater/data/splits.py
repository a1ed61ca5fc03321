"""Splits: the face windows by source into train, validation and test folds, as training uses them.

The default test split (`default_test_split`) is what `verify` and `diff` score programs on; it is
the test fold of a default training run, defined here so that neither needs the trainer.
"""

from __future__ import annotations

import numpy as np

from templater.data import faces

FOLDS = 5
PHOTO_WINDOWS = 150  # random windows per training photo in the default run

_BASE_CACHE: dict[int, faces.WindowSet] = {}


def base(photo_windows: int) -> faces.WindowSet:
    """Every window before augmentation. It depends only on its size (its own fixed seed), so
    folds and runs share it."""
    if photo_windows not in _BASE_CACHE:
        _BASE_CACHE[photo_windows] = faces.base_windows(photo_windows, seed=0)
    return _BASE_CACHE[photo_windows]


def source_split(
    photo_windows: int = PHOTO_WINDOWS,
    test_fold: int = 0,
    folds: int = FOLDS,
    seed: int = 0,
    photo_val_folds: int = 1,
    final: bool = False,
) -> tuple[faces.WindowSet, faces.WindowSet, faces.WindowSet]:
    """Train (not yet augmented), validation and test windows for one fold split by source.
    `final`: every source but the validation fold trains; nothing is left to test."""
    train, val, test = faces.split(
        base(photo_windows), test_fold, folds, seed=seed, photo_val_folds=photo_val_folds
    )
    if final:
        train, test = train.plus(test), test.take(np.zeros(len(test), dtype=bool))
    return train, val, test


def default_test_split() -> faces.WindowSet:
    """The test fold of the default training run (`templater train` with no options)."""
    return source_split()[2]
