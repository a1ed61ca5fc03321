"""Training orchestration: face data -> search -> threshold on validation -> Network and reports.

Splits are by source (see `templater.data.faces`): 5 folds of sources, fold 0 tests, fold 1
validates, the rest trains. The threshold is the one with the highest validation accuracy
(midpoints between sorted validation scores; ties go to the highest, which admits fewer false
positives). Bootstrapping (Rowley, Baluja and Kanade): after the first search, scan the training
photos, add the windows scoring above the threshold as non-faces, continue the search, repeat.
An ensemble searches several networks from different seeds on the same data and merges them
into one wider network with their mean score (`templater.ensemble`).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from templater.data import faces
from templater.ensemble import merge, mirror_average
from templater.errors import TemplaterError, UsageError
from templater.fileio import write_atomic
from templater.network import Head, Network, Normalization, sequential_sum
from templater.scan import DEFAULT_SCALES
from templater.search import STRATEGIES, SearchResult, search
from templater.search.objective import TRAINABLE, Objective, Template

INPUT_SHAPE = (25, 25)
DEFAULT_ARCH = "625-16-1"
DEFAULT_EPOCHS = 60
DEFAULT_BOOTSTRAP = 6
# The shipped recipe is one network, 150 photo windows, 1 box per megapixel of the validation
# photos. A validation-only study found a recipe with more faces at equal false positives (README,
# "An ensemble recipe": `--ensemble 4 --photo-windows 400 --validation-photo-folds 2
# --fp-per-megapixel 0.5 --threshold-rule unseen`; in 5-fold cross-validation, at the threshold
# leaving 1 box per megapixel on the test photos, it found 0.58 and 0.49 of the test faces against
# 0.33 and 0.32), but on the astronaut it missed the face with two seeds of three, so the
# defaults stay as shipped.
DEFAULT_ENSEMBLE = 1  # members of the seed ensemble (see `templater.ensemble`)
MAX_ENSEMBLE = 16
# The detector's operating point: at most this many boxes per megapixel of face-free photos
# after non-max suppression, measured on the validation photos (never trained on).
FP_PER_MEGAPIXEL = 1.0
# How the budget is read (see `detection_threshold`): "validation" lets the validation photos
# themselves have that many boxes per megapixel; "unseen" aims the expected rate on photos never
# seen at it, which takes one box fewer on the validation photos (in cross-validation over the
# training photos, each photo left out in turn, "unseen" at 0.5 gave 0.97 boxes per megapixel on
# the photos left out; "validation" at 1.0 gave 1.94 and 2.24 for seeds 0 and 1). "faces" sets
# no photo budget: the threshold lets `face_recall` of the validation faces through, and the
# rate on new photos follows from the ranking (README, "Mirror averaging and a threshold from the
# faces").
THRESHOLD_RULES = ("validation", "unseen", "faces")
FOLDS = 5
# The --face-recall values whose results cross-validation reports (see `detector_metrics`).
FACE_RECALL_SWEEP = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
BATCH = 64
# Most false positives kept per photo and bootstrapping round (the hardest ones).
HARD_PER_PHOTO = 2000
# Mined windows are those scoring above 0 (the loss's boundary), at the scan's own stride.
MINE_THRESHOLD = 0.0
MINE_STRIDE = 2
# The share of the first search's budget each bootstrapping round adds.
ROUND_SHARE = 0.5

# (evaluated so far, total, training loss, validation accuracy)
TrainProgress = Callable[[int, int, float, float], None]


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the model; the same config gives a byte-identical model file."""

    arch: str = DEFAULT_ARCH
    search: str = "sgd"
    epochs: int | None = None  # sgd: passes over the training set (default DEFAULT_EPOCHS)
    budget: int | None = None  # programs evaluated in the first search (overrides epochs)
    seed: int = 0
    bootstrap: int = DEFAULT_BOOTSTRAP
    hidden: str = "relu"
    weight_decay: float = 1e-4
    lr: float = 2e-3
    photo_windows: int = 150  # random windows per training photo
    augment_copies: int = 30  # altered copies per lfw window
    window_eps: float = 0.05  # normalisation floor: low-contrast windows stay small, not noise
    final: bool = False  # train on the test fold too (the shipped detector); no test metrics
    fp_per_megapixel: float = FP_PER_MEGAPIXEL  # the detector's operating point (see above)
    threshold_rule: str = "validation"  # one of THRESHOLD_RULES
    face_recall: float = 0.4  # the "faces" rule: the share of validation faces above threshold
    validation_photo_folds: int = 1  # folds of photos the threshold is set on (see faces.split)
    mine_scales: tuple[float, ...] = DEFAULT_SCALES  # pyramid scanned for false positives
    ensemble: int = DEFAULT_ENSEMBLE  # members searched from different starts, merged into one net
    mirror: bool = False  # the detector averages the scores of each window and its mirror image


@dataclass(frozen=True, eq=False)
class TrainResult:
    network: Network
    curve: tuple[tuple[int, float], ...]
    metrics: dict[str, Any]
    config: TrainConfig
    first_weights: np.ndarray = field(repr=False)


def parse_arch(text: str, input_size: int = INPUT_SHAPE[0] * INPUT_SHAPE[1]) -> tuple[int, ...]:
    """`625-16-1` -> (625, 16, 1). The input must match the data (625 = 25x25 windows), the
    output must be 1 score, and there must be at least one hidden layer (a template with holes
    worth searching; `625-1` would be a bare linear score)."""
    parts = str(text).strip().split("-")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"--arch {text!r} is not sizes joined by '-', like {DEFAULT_ARCH}"
        ) from None
    if any(not p.isdigit() for p in parts):
        raise UsageError(f"--arch {text!r} is not sizes joined by '-', like {DEFAULT_ARCH}")
    if len(sizes) < 3:
        raise UsageError(f"--arch {text!r} needs at least one hidden layer, like {DEFAULT_ARCH}")
    if any(n < 1 for n in sizes):
        raise UsageError(f"--arch {text!r}: every layer needs at least 1 unit")
    if any(n > 4096 for n in sizes[1:]):
        raise UsageError(f"--arch {text!r}: layers wider than 4096 are not supported for training")
    if sizes[0] != input_size:
        raise UsageError(
            f"--arch {text!r} takes {sizes[0]} inputs but the face windows have {input_size} "
            f"({INPUT_SHAPE[0]}x{INPUT_SHAPE[1]} pixels)"
        )
    if sizes[-1] != 1:
        raise UsageError(f"--arch {text!r} must end in 1 output (the face score), not {sizes[-1]}")
    return sizes


def validate(config: TrainConfig) -> None:
    """Every check that needs no data, so bad input fails before any work or file."""
    parse_arch(config.arch)
    if config.search not in STRATEGIES:
        raise UsageError(
            f"unknown search {config.search!r}; choose one of: {', '.join(STRATEGIES)}"
        )
    for name in ("epochs", "budget"):
        value = getattr(config, name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise UsageError(f"--{name} must be a positive integer, got {value!r}")
    if config.epochs is not None and config.search != "sgd":
        raise UsageError("--epochs applies to --search sgd; give --budget for random and hillclimb")
    if config.search != "sgd" and config.budget is None:
        raise UsageError(f"--search {config.search} needs --budget (programs to evaluate)")
    if isinstance(config.ensemble, bool) or not isinstance(config.ensemble, int) or not (
        1 <= config.ensemble <= MAX_ENSEMBLE
    ):
        raise UsageError(
            f"--ensemble must be an integer from 1 to {MAX_ENSEMBLE}, got {config.ensemble!r}"
        )
    if not isinstance(config.bootstrap, int) or config.bootstrap < 0:
        raise UsageError(f"--bootstrap must be a non-negative integer, got {config.bootstrap!r}")
    if config.hidden not in TRAINABLE:
        raise UsageError(
            f"unknown hidden activation {config.hidden!r}; trainable: {', '.join(TRAINABLE)}"
        )
    windows = config.photo_windows
    if isinstance(windows, bool) or not isinstance(windows, int) or windows < 1:
        raise UsageError(f"--photo-windows must be a positive integer, got {windows!r}")
    if config.threshold_rule not in THRESHOLD_RULES:
        raise UsageError(
            f"unknown threshold rule {config.threshold_rule!r}; "
            f"choose one of: {', '.join(THRESHOLD_RULES)}"
        )
    photo_folds = config.validation_photo_folds
    if isinstance(photo_folds, bool) or photo_folds not in range(1, FOLDS - 1):
        raise UsageError(f"--validation-photo-folds must be 1 to {FOLDS - 2}, got {photo_folds!r}")
    if not (isinstance(config.face_recall, (int, float)) and 0 < config.face_recall < 1):
        raise UsageError(f"--face-recall must be between 0 and 1, got {config.face_recall!r}")
    for name in ("window_eps", "fp_per_megapixel"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise UsageError(f"{name} must be a positive number, got {value!r}")
    if not (math.isfinite(config.weight_decay) and config.weight_decay >= 0):
        raise UsageError(f"weight decay must be finite and >= 0, got {config.weight_decay!r}")


def output_paths(out: str | os.PathLike) -> dict[str, Path]:
    """The model and its companions: `<stem>.curve.png`, `.weights.png` and `.metrics.json`."""
    model = Path(out)
    stem = model.with_suffix("") if model.suffix == ".npz" else model
    return {
        "model": model,
        "curve": stem.with_name(stem.name + ".curve.png"),
        "weights": stem.with_name(stem.name + ".weights.png"),
        "metrics": stem.with_name(stem.name + ".metrics.json"),
    }


def check_writable(out: str | os.PathLike) -> None:
    """Refuse an output path we could not write, before training (probe file removed at once)."""
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"output {path} is a directory; give a file name like model.npz")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise UsageError(f"cannot write {path}: folder {folder} does not exist")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None
    os.close(fd)
    os.unlink(probe)


def prepare(
    config: TrainConfig, test_fold: int = 0, folds: int = FOLDS
) -> tuple[faces.WindowSet, faces.WindowSet, faces.WindowSet]:
    """Train (augmented), validation and test window sets for one fold split by source."""
    base = _base(config.photo_windows)
    train, val, test = faces.split(
        base, test_fold, folds, seed=config.seed, photo_val_folds=config.validation_photo_folds
    )
    if config.final:  # every source but the validation fold trains; nothing is left to test
        train, test = train.plus(test), test.take(np.zeros(len(test), dtype=bool))
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
        # cross-validation: README, "Mirror averaging and a threshold from the faces").
        net = mirror_average(net, name=f"{net.name}, mirror-averaged")
        net = net.with_layers(
            net.layers, head=Head("binary", choose_threshold(_scores(net, x_val), val.y))
        )
    val_photos = faces.training_photo_names(val)
    if config.threshold_rule == "faces":
        face_scores = _scores(net, x_val[val.kind == faces.KINDS.index("face")])
        net = net.with_layers(
            net.layers, head=Head("binary", face_threshold(face_scores, config.face_recall))
        )
    elif val_photos:
        net = net.with_layers(
            net.layers,
            head=Head(
                "binary",
                detection_threshold(
                    net,
                    val_photos,
                    config.mine_scales,
                    config.fp_per_megapixel,
                    config.threshold_rule,
                ),
            ),
        )
    facts = {
        "validation_photos": list(val_photos),
        "evaluations": done,
        "train_windows": len(train),
        "hard_negatives_per_round": hard_added,
        "training_photos": list(photos),
    }
    return net, tuple(curve), facts


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
    face (measured: README, "The face detector"). Keeping the old arithmetic here keeps
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


_BASE_CACHE: dict[int, faces.WindowSet] = {}


def _base(photo_windows: int) -> faces.WindowSet:
    # The base set depends only on its size (its own fixed seed), so folds and runs share it.
    if photo_windows not in _BASE_CACHE:
        _BASE_CACHE[photo_windows] = faces.base_windows(photo_windows, seed=0)
    return _BASE_CACHE[photo_windows]


def with_changes(config: TrainConfig, **changes: Any) -> TrainConfig:
    return replace(config, **changes)
