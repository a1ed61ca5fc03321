"""Fitting: the searches, bootstrapping rounds and ensemble that turn face data into a Network."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from templater.data import faces, splits
from templater.ensemble import merge, mirror_average
from templater.errors import UsageError
from templater.fileio import write_atomic
from templater.network import Head, Network, Normalization, sequential_sum
from templater.search import SearchResult, search
from templater.search.objective import Objective, Template
from templater.train.config import (
    BATCH,
    DEFAULT_EPOCHS,
    FACE_RECALL_SWEEP,
    FOLDS,
    HARD_PER_PHOTO,
    INPUT_SHAPE,
    MINE_STRIDE,
    MINE_THRESHOLD,
    ROUND_SHARE,
    TrainConfig,
    TrainProgress,
    TrainResult,
    output_paths,
    parse_arch,
    validate,
)
from templater.train.evaluation import detector_metrics, evaluate
from templater.train.thresholds import (
    choose_threshold,
    detection_threshold,
    face_threshold,
    threshold_rule_text,
)


def prepare(
    config: TrainConfig, test_fold: int = 0, folds: int = FOLDS
) -> tuple[faces.WindowSet, faces.WindowSet, faces.WindowSet]:
    """Train (augmented), validation and test window sets for one fold split by source."""
    train, val, test = splits.source_split(
        config.photo_windows, test_fold, folds, config.seed, config.validation_photo_folds,
        config.final,
    )
    rng = np.random.default_rng([config.seed, 1])
    return faces.augment(train, rng, config.augment_copies), val, test


def fit(
    config: TrainConfig,
    train: faces.WindowSet,
    val: faces.WindowSet,
    progress: TrainProgress | None = None,
) -> tuple[Network, tuple[tuple[int, float], ...], dict[str, Any]]:
    """Search, bootstrap, choose the threshold: the network, its curve, and training facts.

    With an ensemble, every round searches each member on to the end of the round's budget, then
    the merged network (the detector) mines the next round's false positives, which all members
    share.
    """
    validate(config)
    sizes = parse_arch(config.arch)
    template = Template.mlp(sizes, config.hidden)
    norm = Normalization("window", config.window_eps)
    rngs = [_member_rng(config.seed, k) for k in range(config.ensemble)]
    first = _first_budget(config, len(train))
    rounds = [first] + [max(1, int(first * ROUND_SHARE))] * config.bootstrap
    total = sum(rounds) * config.ensemble
    x_val = search_inputs(norm, val.x)
    thetas: list[np.ndarray | None] = [None] * config.ensemble
    curve: list[tuple[int, float]] = []
    done = 0
    hard_added = []
    photos = faces.training_photo_names(train)
    net = None
    for index, budget in enumerate(rounds):
        if index:
            assert net is not None
            hard = faces.hard_negatives(
                net, photos, train, MINE_THRESHOLD, HARD_PER_PHOTO, config.mine_scales, MINE_STRIDE
            )
            hard_added.append(len(hard))
            train = train.plus(hard)
        objective = Objective(
            template, search_inputs(norm, train.x), train.y, x_val, val.y, config.weight_decay
        )
        for member, rng in enumerate(rngs):
            result = _search_member(
                config, objective, budget, rng, thetas[member], done, total, progress
            )
            thetas[member] = result.theta
            curve.extend(result.curve)
            done += result.evaluations
        net = _network(config, template, thetas, norm)
        net = net.with_layers(
            net.layers, head=Head("binary", choose_threshold(_scores(net, x_val), val.y))
        )
    assert net is not None
    if config.mirror:
        # After the last round, not before each: the members first learn their own false
        # positives (mining with the mirrored network instead found fewer faces in
        # cross-validation: docs/face-detector.md, "Mirror averaging and a threshold from the
        # faces").
        net = mirror_average(net, name=f"{net.name}, mirror-averaged")
        net = net.with_layers(
            net.layers, head=Head("binary", choose_threshold(_scores(net, x_val), val.y))
        )
    val_photos = faces.training_photo_names(val)
    net = net.with_layers(net.layers, head=Head("binary", _threshold(config, net, val, x_val)))
    facts = {
        "validation_photos": list(val_photos),
        "evaluations": done,
        "train_windows": len(train),
        "hard_negatives_per_round": hard_added,
        "training_photos": list(photos),
    }
    return net, tuple(curve), facts


def _threshold(
    config: TrainConfig, net: Network, val: faces.WindowSet, x_val: np.ndarray
) -> float:
    """The detector's threshold by the config's rule: a share of the validation faces, or a
    budget of boxes per megapixel on the validation photos (else the most accurate one)."""
    if config.threshold_rule == "faces":
        face_scores = _scores(net, x_val[val.kind == faces.KINDS.index("face")])
        return face_threshold(face_scores, config.face_recall)
    val_photos = faces.training_photo_names(val)
    if not val_photos:
        return net.head.threshold
    return detection_threshold(
        net, val_photos, config.mine_scales, config.fp_per_megapixel, config.threshold_rule
    )


def train(config: TrainConfig, progress: TrainProgress | None = None) -> TrainResult:
    """Train the default split (fold 0 tests, fold 1 validates) and measure the held-out test."""
    validate(config)
    start = time.perf_counter()
    train_set, val, test = prepare(config)
    net, curve, facts = fit(config, train_set, val, progress)
    metrics = {
        "test": evaluate(net, test) if len(test) else None,  # --final trains on it
        "validation": evaluate(net, val),
        "threshold": net.head.threshold,
        "threshold_rule": threshold_rule_text(config),
        "config": asdict(config),
        **facts,
        "test_windows": len(test),
        "validation_windows": len(val),
        "seconds": round(time.perf_counter() - start, 2),
    }
    metadata = {
        "training": {
            "config": asdict(config),
            "evaluations": facts["evaluations"],
            "threshold_rule": metrics["threshold_rule"],
            "test_accuracy": metrics["test"]["accuracy"] if metrics["test"] else None,
            "validation_accuracy": metrics["validation"]["accuracy"],
            "data": "skimage.data.lfw_subset + face-free scikit-image photos; split by source",
        }
    }
    net = net.with_layers(net.layers, metadata=metadata)
    return TrainResult(net, curve, metrics, config, net.layers[0].weights)


def cross_validate(
    config: TrainConfig, folds: int = FOLDS, progress: Callable[[int, float], None] | None = None
) -> dict[str, Any]:
    """Held-out accuracy over `folds` splits by source (each fold tests once), and the detector's
    results on each test fold (`detector_metrics`), pooled over the folds under "detector"."""
    validate(config)
    if folds < 3:
        raise UsageError(f"--folds needs at least 3 (test, validation, training), got {folds}")
    if config.validation_photo_folds > folds - 2:
        raise UsageError(
            f"--folds {folds} leaves no training photos with --validation-photo-folds "
            f"{config.validation_photo_folds}"
        )
    per_fold = []
    for fold in range(folds):
        train_set, val, test = prepare(config, fold, folds)
        net, _, _ = fit(config, train_set, val)
        m = evaluate(net, test) | detector_metrics(net, test, val, config.mine_scales)
        per_fold.append(m)
        if progress is not None:
            progress(fold, m["accuracy"])
    out: dict[str, Any] = {"folds": folds, "per_fold": per_fold}
    for key in ("accuracy", "accuracy_lfw", "roc_auc"):
        values = np.array([m[key] for m in per_fold])
        out[key] = {
            "mean": float(values.mean()),
            "std": float(values.std()),
            "min": float(values.min()),
            "max": float(values.max()),
        }
    def total(key: str) -> float:
        return sum(m[key] for m in per_fold)

    out["detector"] = {
        "faces": total("faces"),
        "face_recall": total("faces_found") / total("faces"),
        "megapixels": total("megapixels"),
        "boxes_per_megapixel": total("boxes") / total("megapixels"),
        "face_recall_at_1_box_per_megapixel": (
            total("faces_found_at_1_box_per_megapixel") / total("faces")
        ),
        # Each --face-recall of the sweep: the share of the test faces found and the boxes per
        # MP on the test photos, so the operating point can be chosen here, not on test images.
        "face_recall_sweep": {
            f"{r:g}": {
                "face_recall": sum(m["sweep"][i][0] for m in per_fold) / total("faces"),
                "boxes_per_megapixel": sum(m["sweep"][i][1] for m in per_fold)
                / total("megapixels"),
            }
            for i, r in enumerate(FACE_RECALL_SWEEP)
        },
    }
    return out


def write_outputs(result: TrainResult, out: str | os.PathLike) -> dict[str, Path]:
    """Render everything to bytes first, then write each file atomically (the model last)."""
    from templater import plots

    paths = output_paths(out)
    net = result.network
    blobs = {
        "curve": plots.curves_png(
            {result.config.search: list(result.curve)},
            f"{net.architecture} trained by {result.config.search}",
        ),
        "weights": plots.weights_png(
            result.first_weights,
            INPUT_SHAPE,
            "first-layer weights: what each hidden unit looks for",
        ),
        "metrics": json.dumps(result.metrics, indent=2, sort_keys=True) + "\n",
    }
    from templater.modelfile import to_bytes

    blobs["model"] = to_bytes(net)
    for key in ("curve", "weights", "metrics", "model"):
        write_atomic(paths[key], blobs[key])
    return paths


def _search_member(
    config: TrainConfig,
    objective: Objective,
    budget: int,
    rng: np.random.Generator,
    theta: np.ndarray | None,
    done: int,
    total: int,
    progress: TrainProgress | None,
) -> SearchResult:
    """One member's search for one round, reporting progress over the whole training."""

    def report(n: int, _total: int, loss: float, err: float) -> None:
        if progress is not None:
            progress(done + n, total, loss, 1.0 - err)

    options = {"lr": config.lr} if config.search == "sgd" else {}
    return search(
        objective, config.search, budget, rng, report, theta0=theta, offset=done, **options
    )


def _first_budget(config: TrainConfig, n_train: int) -> int:
    if config.budget is not None:
        return config.budget
    if config.search != "sgd":
        raise UsageError(f"--search {config.search} needs --budget (programs to evaluate)")
    epochs = DEFAULT_EPOCHS if config.epochs is None else config.epochs
    return epochs * math.ceil(n_train / BATCH)


def _network(
    config: TrainConfig,
    template: Template,
    thetas: list[np.ndarray | None],
    norm: Normalization,
) -> Network:
    """The members as one network (threshold 0 until one is chosen)."""
    members = [
        Network(
            input_size=template.sizes[0],
            layers=template.layers(theta),
            head=Head("binary", 0.0),
            normalization=norm,
            input_shape=INPUT_SHAPE,
        )
        for theta in thetas
        if theta is not None
    ]
    what = f"{config.arch}" if config.ensemble == 1 else f"{config.ensemble} x {config.arch}"
    return merge(members, name=f"face {what} ({config.search}, seed {config.seed})")


def search_inputs(norm: Normalization, x: np.ndarray) -> np.ndarray:
    """Windows as the search sees them: normalised with left-to-right sums and a division per
    pixel, the arithmetic the shipped model was trained with. Programs and the reference now take
    the statistics in lanes (`network.lane_sum`), which differs in the last bits; searching on
    those bits instead trains, from the same recipe and seed, a model that misses the astronaut's
    face (measured: docs/face-detector.md). Keeping the old arithmetic here keeps
    `templater train --final` reproducing the committed model; the fragility is the detector's.
    """
    n = x.shape[1]
    mean = sequential_sum(x) / n
    d = x - mean[:, None]
    return d / (np.sqrt(sequential_sum(d * d) / n) + norm.eps)[:, None]


def _member_rng(seed: int, member: int) -> np.random.Generator:
    # Member 0 draws exactly what a single network draws, so --ensemble 1 is today's model.
    return np.random.default_rng([seed, 2] if member == 0 else [seed, 2, member])


def _scores(net: Network, x_normalised: np.ndarray) -> np.ndarray:
    """Scores of already-normalised rows (the search's view), by BLAS."""
    h = x_normalised
    for layer in net.layers:
        h = layer.apply(h, exact=False)
    return h[:, 0]
