"""Evaluation: a trained network measured on windows and, as a detector, on photos."""

from __future__ import annotations

from typing import Any

import numpy as np

from templater.data import faces
from templater.errors import TemplaterError
from templater.network import Network
from templater.train.config import FACE_RECALL_SWEEP
from templater.train.thresholds import detection_threshold, face_threshold


def detector_metrics(
    net: Network, test: faces.WindowSet, val: faces.WindowSet, scales: tuple[float, ...]
) -> dict:
    """The detector on a test fold: how many of its lfw faces score above the threshold, how
    many boxes `find_faces` would report on its face-free photos, and how many faces pass the
    threshold that leaves at most 1 box per megapixel on those photos (the ranking of faces
    against backgrounds, whatever the threshold rule). "sweep" holds (faces found, boxes) at
    the threshold each `FACE_RECALL_SWEEP` value of the faces rule would set on `val`."""
    from templater.scan import scan

    face = faces.KINDS.index("face")
    photos = faces.training_photo_names(test)
    scores = net.score(test.x[test.kind == face], exact=False)
    val_scores = net.score(val.x[val.kind == face], exact=False)
    sweep = [face_threshold(val_scores, r) for r in FACE_RECALL_SWEEP]
    threshold = net.head.threshold
    at_one_per_mp = detection_threshold(net, photos, scales, 1.0, "validation")
    # Greedy NMS keeps, above any t, exactly the boxes it keeps at t from the lowest threshold.
    lowest = min(threshold, *sweep)
    box_scores = np.concatenate(
        [np.zeros(0)] + [scan(net, faces.photo(name), scales, 2, lowest)[:, 3] for name in photos]
    )
    return {
        "faces": len(scores),
        "faces_found": int(np.sum(scores > threshold)),
        "photos": list(photos),
        "megapixels": sum(faces.photo(name).size for name in photos) / 1e6,
        "boxes": int(np.sum(box_scores > threshold)),
        "faces_found_at_1_box_per_megapixel": int(np.sum(scores > at_one_per_mp)),
        "sweep": [(int(np.sum(scores > t)), int(np.sum(box_scores > t))) for t in sweep],
    }


def evaluate(net: Network, ws: faces.WindowSet) -> dict[str, Any]:
    """Accuracy (all windows and the lfw_subset ones), ROC AUC, precision and recall."""
    scores = net.score(ws.x, exact=False)
    assert isinstance(scores, np.ndarray)
    pred = scores > net.head.threshold
    truth = ws.y == 1
    tp = int(np.sum(pred & truth))
    fp = int(np.sum(pred & ~truth))
    fn = int(np.sum(~pred & truth))
    lfw = ws.kind != 2
    return {
        "accuracy": float(np.mean(pred == truth)),
        "accuracy_lfw": float(np.mean(pred[lfw] == truth[lfw])) if lfw.any() else float("nan"),
        "roc_auc": roc_auc(scores, ws.y),
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "windows": len(ws),
        "faces": int(truth.sum()),
    }


def roc_auc(scores: np.ndarray, y: np.ndarray) -> float:
    """Area under the ROC curve: P(face score > non-face score), ties counting half."""
    pos, neg = scores[y == 1], scores[y == 0]
    if not len(pos) or not len(neg):
        raise TemplaterError("ROC AUC needs both faces and non-faces")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))
