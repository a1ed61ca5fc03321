"""Training the own detector on a tiny budget: it runs, mines, sets a threshold, saves."""

import numpy as np
import pytest

from templater import own_train
from templater.own_detector import load


def test_shrink_keeps_flat_windows_flat():
    x = np.full((2, 625), 0.3)
    out = own_train.shrink(x, 18)
    assert out.shape == (2, 1, 18, 18)
    np.testing.assert_allclose(out, 0.3)


def test_sampler_balances_the_classes():
    x = np.random.default_rng(0).random((50, 1, 18, 18))
    data = own_train.Windows(x, np.r_[np.ones(5), np.zeros(45)])
    x, y, w = own_train.sampler(data, 16)(np.random.default_rng(1))
    assert x.shape == (16, 1, 18, 18) and y.sum() == 8 and w.sum() == 16


@pytest.mark.slow
def test_tiny_training_run(tmp_path):
    recipe = own_train.ConvRecipe(
        steps=30, rounds=1, round_steps=10, augment_copies=2, members=1
    )
    messages = []
    det, metrics = own_train.train(recipe, 0, test_fold=0, progress=messages.append)
    assert any("hard negatives" in m for m in messages)
    assert np.isfinite(det.threshold)
    assert metrics["faces"] > 0 and 0 <= metrics["faces_found"] <= metrics["faces"]
    # the recorded scores give the threshold and the counts again (for other budgets later)
    val = np.array(metrics["validation_box_scores"])
    assert own_train.budget_threshold(
        val, metrics["validation_megapixels"], recipe.fp_per_megapixel
    ) == det.threshold
    assert sum(f > det.threshold for f in metrics["face_scores"]) == metrics["faces_found"]
    own_train.write_outputs(det, tmp_path / "out", targets=())
    back = load(tmp_path / "out" / "model.npz")
    assert back.threshold == det.threshold
    for a, b in zip(back.params, det.params, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_training_is_deterministic_per_seed():
    recipe = own_train.ConvRecipe(
        steps=20, rounds=1, round_steps=10, augment_copies=1, average_last=5, members=2
    )
    first, _ = own_train.train(recipe, 3)
    again, _ = own_train.train(recipe, 3)
    assert first.threshold == again.threshold
    for a, b in zip(first.params, again.params, strict=True):
        np.testing.assert_array_equal(a, b)


def test_member_seeds():
    assert own_train.member_seeds(own_train.ConvRecipe(members=1), 4) == [4]
    assert own_train.ConvRecipe().members == 3  # the shipped recipe (ens3h)
    assert own_train.member_seeds(own_train.ConvRecipe(members=3), 2) == [2000, 2001, 2002]
    with pytest.raises(Exception, match="members"):
        own_train.member_seeds(own_train.ConvRecipe(members=0), 0)


@pytest.mark.slow
def test_ensemble_training_honours_members():
    one = own_train.ConvRecipe(steps=20, rounds=1, round_steps=10, augment_copies=1, members=1)
    members = [own_train.train(one, s)[0] for s in (5000, 5001)]
    ens, _ = own_train.train(own_train.ConvRecipe(**{**one.__dict__, "members": 2}), 5)
    assert ens.members == 2 and ens.metadata["member_seeds"] == [5000, 5001]
    # each member is the net its own seed searches alone (same split: split_seed 0)
    for k, m in enumerate(members):
        for a, b in zip(ens.params[k * 11 : (k + 1) * 11], m.params, strict=True):
            np.testing.assert_array_equal(a, b)
    assert np.isfinite(ens.threshold)


def test_budget_threshold_leaves_the_allowed_boxes():
    scores = np.array([5.0, 4.0, 3.0, 2.0])
    assert own_train.budget_threshold(scores, 2.5, 1.0) == 3.0  # 2 allowed: 5 and 4 stay above
    assert own_train.budget_threshold(scores, 2.5, 0.2) == 5.0  # none allowed
    assert own_train.budget_threshold(scores, 10.0, 1.0) == -5.0  # fewer boxes than allowed
