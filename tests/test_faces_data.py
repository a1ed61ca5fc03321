"""The face / non-face window set: sources, augmentation, splits by source, hard negatives."""

from __future__ import annotations

import numpy as np
import pytest

from templater.data import faces
from templater.errors import UsageError
from templater.network import Dense, Head, Network, Normalization


@pytest.fixture(scope="module")
def base() -> faces.WindowSet:
    return faces.base_windows(photo_windows=20, seed=0)


def test_base_set_has_the_lfw_windows_and_photo_windows(base: faces.WindowSet) -> None:
    n_photos = len(faces.TRAINING_PHOTOS)
    assert base.x.shape == (200 + 20 * n_photos, 625)
    assert base.y[:100].all() and not base.y[100:].any()
    assert base.x.min() >= 0.0 and base.x.max() <= 1.0
    assert len(np.unique(base.group)) == 200 + n_photos


def test_no_photo_with_a_face_or_held_out_is_used() -> None:
    used = set(faces.TRAINING_PHOTOS)
    assert not used & {"astronaut", "camera"}
    assert not used & set(faces.HELD_OUT_PHOTOS)


def test_splits_never_share_a_source(base: faces.WindowSet) -> None:
    rng = np.random.default_rng(0)
    for fold in range(5):
        train, val, test = faces.split(base, fold, 5, seed=3)
        train = faces.augment(train, rng, copies=2)
        groups = [set(s.group.tolist()) for s in (train, val, test)]
        assert not groups[0] & groups[1] and not groups[0] & groups[2] and not groups[1] & groups[2]
        for s in (val, test):  # every split holds every kind of window
            assert set(s.kind.tolist()) == {0, 1, 2}
    # each source tests exactly once over the folds
    tested = np.concatenate([faces.split(base, f, 5, seed=3)[2].group for f in range(5)])
    assert sorted(set(tested.tolist())) == sorted(set(base.group.tolist()))


def test_more_photo_validation_folds_move_only_photos(base: faces.WindowSet) -> None:
    one = faces.split(base, 0, 5, seed=3)
    two = faces.split(base, 0, 5, seed=3, photo_val_folds=2)
    assert np.array_equal(one[2].group, two[2].group)  # the test fold is unchanged
    lfw = [set(s.group[s.kind != 2].tolist()) for s in (*one[:2], *two[:2])]
    assert lfw[0] == lfw[2] and lfw[1] == lfw[3]  # faces train and validate as before
    moved = set(two[1].group.tolist()) - set(one[1].group.tolist())
    assert moved and moved == set(one[0].group.tolist()) - set(two[0].group.tolist())
    assert all(base.group_names[g].startswith("photo:") for g in moved)
    with pytest.raises(UsageError, match="photo validation folds"):
        faces.split(base, 0, 5, seed=3, photo_val_folds=4)


def test_augmented_copies_keep_label_and_source(base: faces.WindowSet) -> None:
    out = faces.augment(base, np.random.default_rng(1), copies=3)
    assert len(out) == len(base) + 3 * 200
    extra = out.take(np.arange(len(out)) >= len(base))
    assert np.array_equal(extra.y, np.repeat(base.y[:200], 3))
    assert np.array_equal(extra.group, np.repeat(base.group[:200], 3))
    assert extra.x.min() >= 0.0 and extra.x.max() <= 1.0
    # copies differ from their source
    assert not np.array_equal(extra.x[0], base.x[0])


def test_gray_handles_rgb_rgba_and_bool() -> None:
    assert faces.gray(np.zeros((4, 5, 3), dtype=np.uint8)).shape == (4, 5)
    rgba = np.zeros((4, 5, 4), dtype=np.uint8)
    assert faces.gray(rgba).shape == (4, 5)
    assert faces.gray(np.ones((3, 3), dtype=bool)).max() == 1.0


def test_hard_negatives_are_windows_above_threshold(base: faces.WindowSet) -> None:
    w = np.zeros((625, 1))
    w[312, 0] = 1.0  # the centre pixel, after normalisation
    net = Network(
        625,
        (Dense(w, np.zeros(1)),),
        head=Head("binary", 2.0),
        normalization=Normalization("window"),
        input_shape=(25, 25),
    )
    hard = faces.hard_negatives(net, ("coins",), base, 2.0, limit_per_photo=30, scales=(0.5,))
    assert 0 < len(hard) <= 30 and not hard.y.any()
    assert net.score(hard.x, exact=False).min() > 2.0
    assert set(hard.group.tolist()) == {base.group_names.index("photo:coins")}


def test_too_many_folds_is_refused(base: faces.WindowSet) -> None:
    with pytest.raises(UsageError, match="cannot fill"):
        faces.group_folds(base, 50, seed=0)
