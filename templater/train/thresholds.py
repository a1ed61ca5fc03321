"""Thresholds: where a trained network's decision `score > threshold` is put."""

from __future__ import annotations

import math

import numpy as np

from templater.data import faces
from templater.errors import UsageError
from templater.network import Network
from templater.train.config import FP_PER_MEGAPIXEL, TrainConfig


def detection_threshold(
    net: Network,
    photos: tuple[str, ...],
    scales: tuple[float, ...],
    budget: float = FP_PER_MEGAPIXEL,
    rule: str = "validation",
) -> float:
    """The lowest threshold at which scanning `photos` (face-free) gives at most `allowed` boxes
    after non-max suppression, as `find_faces` would report them.

    "validation": `allowed` = floor(budget * megapixels). "unseen": one fewer. The threshold sits
    at the score of the (allowed + 1)-th best box, and a box of a new photo scores above the
    (a + 1)-th best of n exchangeable boxes with probability (a + 1) / (n + 1): the expected rate
    on new photos is (allowed + 1) / megapixels, which "unseen" keeps within the budget. With too
    few validation megapixels for that, it takes the best box's score (no box at all).
    """
    from templater.scan import candidates, non_max_suppression

    megapixels = sum(faces.photo(name).size for name in photos) / 1e6
    allowed = int(budget * megapixels) - (1 if rule == "unseen" else 0)
    found = [candidates(net, faces.photo(name), scales, 2, -np.inf) for name in photos]
    pool = np.concatenate(found)
    # Only the best few hundred windows can matter for a budget of a few boxes.
    scores = np.sort(pool[:, 3])[::-1][: 50 * (max(allowed, 0) + 1)]
    top = [c[c[:, 3] >= scores[-1]] for c in found]
    best = scores[0]  # nothing scores strictly above the best window
    for t in scores[1:]:
        if sum(len(non_max_suppression(c[c[:, 3] > t])) for c in top) > allowed:
            break
        best = t
    return float(best)


def face_threshold(scores: np.ndarray, recall: float) -> float:
    """Halfway between the k-th and (k+1)-th best of the faces' `scores`, k = ceil(recall * n):
    k of the faces score above it."""
    s = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    k = math.ceil(recall * len(s))
    if not 0 < k < len(s):
        raise UsageError(f"a face recall of {recall:g} leaves no threshold among {len(s)} faces")
    return float((s[k - 1] + s[k]) / 2.0)


def threshold_rule_text(config: TrainConfig) -> str:
    """The operating point in words, for the metrics file and the model's metadata."""
    if config.threshold_rule == "faces":
        return (
            f"{config.face_recall:g} of the validation faces (never trained on) score above it; "
            "no budget of boxes on photos"
        )
    where = (
        "on the validation photos"
        if config.threshold_rule == "validation"
        else "expected on unseen photos (one box fewer on the validation photos)"
    )
    return (
        f"at most {config.fp_per_megapixel:g} box per megapixel {where}, after non-max "
        f"suppression; validation photos: {config.validation_photo_folds} fold(s), face-free, "
        "never trained on"
    )


def choose_threshold(scores: np.ndarray, y: np.ndarray) -> float:
    """The threshold with the highest accuracy of `score > t` (ties: the highest t)."""
    s = np.sort(np.unique(scores))
    cands = np.concatenate([[s[0] - 1.0], (s[:-1] + s[1:]) / 2.0, [s[-1] + 1.0]])
    truth = y == 1
    acc = np.array([np.mean((scores > t) == truth) for t in cands])
    best = np.flatnonzero(acc == acc.max())[-1]
    return float(cands[best])
