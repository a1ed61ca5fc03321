"""Training the own convolutional detector by templater's search (conv_sgd), with bootstrapping.

Data. The window set of `templater.data.faces` (lfw_subset faces and non-faces, random windows
of the face-free training photos), split by source as train.py splits it; the training lfw
windows get `augment_copies` altered copies each. Every 25x25 window is shrunk to the template's
window (Gaussian blur of sigma (25/R - 1)/2, then bilinear: the pyramid's own rule). Each
mini-batch is half faces, half non-faces, and every window in it gets a random contrast
(0.6-1.6 about its mean) and brightness (-0.1..0.1): a fully convolutional net sees the
photo's own lighting, with no per-window normalisation.

Search. Adam (`conv_sgd.adam`) for `steps`; then `rounds` of bootstrapping: scan each training
photo at the detector's pyramid, keep its `hard_per_photo` best windows scoring above 0 as new
non-faces, and search `round_steps` more from where it was.

Ensemble. With `members` K > 1, K nets are searched as above, each from its own seed
(1000 * seed + k), on the same split, and the detector scores with the mean of their logits (one
ConvNetwork with grouped convolutions: `own_detector.to_network`). Averaging independent
searches is meant to steady the score scale from seed to seed.

Threshold. Scan the validation photos (face-free, never trained on) at min_face 24 and take
the score of the (allowed + 1)-th best box after NMS, allowed = floor(fp_per_megapixel * MP):
those photos then keep at most `allowed` boxes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from templater.data import faces
from templater.errors import UsageError
from templater.own_detector import OwnDetector, member_scores, normalise, scales
from templater.scan import non_max_suppression, pyramid_level
from templater.search import conv_sgd

MINE_MIN_FACE = 24
MAX_MINE_MIN_FACE_LEVELS = 16
# Windows per photo that thresholds and test boxes are taken from (see photo_boxes).
TOP_CANDIDATES = 1500
# Best box scores a cross-validation fold records (validation and test photos), and its faces'.
KEPT_SCORES = 100


@dataclass(frozen=True)
class ConvRecipe:
    """Everything that decides the trained detector (with the seed, byte for byte)."""

    channels: tuple[int, ...] = (8, 16, 32)
    kernels: tuple[int, ...] = (3, 3, 3)
    pools: tuple[bool, ...] = (True, True, False)
    steps: int = 800
    rounds: int = 5
    round_steps: int = 300
    batch: int = 64
    lr: float = 3e-3
    decay: float = 1e-4
    augment_copies: int = 20
    photo_windows: int = 150
    hard_per_photo: int = 300
    fp_per_megapixel: float = 0.5
    folds: int = 5
    validation_photo_folds: int = 1
    # Polyak averaging: the last round's result is the mean of its last `average_last` weights.
    average_last: int = 0
    # The seed of the split by source (which photos train, which set the threshold); None: the
    # training seed. The fixed split (0) leaves the seed only the search's randomness: initial
    # weights, augmentation and mini-batches (chosen by CV at seeds 1 and 2: docs/own-detector.md).
    split_seed: int | None = 0
    # Nets searched from seeds 1000 * seed + k (k < members) and averaged (their mean logit).
    # 3 members with half a box per MP (ens3h) won by CV at seeds 0 and 1 (docs/own-detector.md).
    members: int = 3

    def stack(self) -> conv_sgd.ConvStack:
        return conv_sgd.ConvStack(self.channels, self.kernels, self.pools, 1)


@dataclass
class Windows:
    """Windows (n, 1, R, R) in [0, 1] and their labels."""

    x: np.ndarray
    y: np.ndarray

    def plus(self, x: np.ndarray, y: np.ndarray) -> Windows:
        return Windows(np.concatenate([self.x, x]), np.concatenate([self.y, y]))


def shrink(x25: np.ndarray, side: int) -> np.ndarray:
    """(n, 625) windows -> (n, 1, side, side), blurred then sampled as the pyramid does."""
    from scipy import ndimage

    imgs = x25.reshape(-1, faces.WINDOW, faces.WINDOW)
    s = side / faces.WINDOW
    sigma = max((1.0 / s - 1.0) / 2.0, 0.0)
    if sigma > 0:
        imgs = ndimage.gaussian_filter(imgs, (0, sigma, sigma), mode="mirror", truncate=4.0)
    centres = (np.arange(side) + 0.5) / s - 0.5
    y = np.clip(centres, 0, faces.WINDOW - 1)
    yy, xx = np.meshgrid(y, y, indexing="ij")
    out = np.empty((len(imgs), side, side))
    for k, img in enumerate(imgs):
        out[k] = ndimage.map_coordinates(img, [yy, xx], order=1, mode="nearest")
    return out[:, None]


def sampler(data: Windows, batch: int) -> Callable[[np.random.Generator], tuple]:
    """Balanced mini-batches with random contrast and brightness, normalised for the net."""
    pos, neg = np.flatnonzero(data.y == 1), np.flatnonzero(data.y == 0)
    half = batch // 2
    y = np.r_[np.ones(half), np.zeros(batch - half)]
    weight = np.ones(batch)

    def draw(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        idx = np.r_[rng.choice(pos, half), rng.choice(neg, batch - half)]
        x = data.x[idx]
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        gain = rng.uniform(0.6, 1.6, (batch, 1, 1, 1))
        shift = rng.uniform(-0.1, 0.1, (batch, 1, 1, 1))
        x = np.clip((x - mean) * gain + mean + shift, 0.0, 1.0)
        return normalise(x), y, weight

    return draw


def score_map(stack: conv_sgd.ConvStack, params: list, level: np.ndarray) -> np.ndarray:
    """The fast (im2col) score map of one level, for mining and thresholds (an ensemble's:
    the mean of its members' maps)."""
    x = normalise(level).astype(params[0].dtype)[None, None]
    return member_scores(stack, params, x)[0, 0]


def photo_boxes(
    stack: conv_sgd.ConvStack, params: list, image: np.ndarray, top: int = TOP_CANDIDATES
) -> np.ndarray:
    """Boxes (row, col, size, score) after NMS by the fast forward, from the `top` best windows
    (exact above the top-th window's score: NMS keeps, above any t, what it keeps from lower)."""
    window, stride = stack.receptive_field(), stack.stride()
    found = []
    for s in scales(image.shape, window, MINE_MIN_FACE):
        m = score_map(stack, params, pyramid_level(image, s))
        flat = np.argsort(-m, axis=None, kind="stable")[:top]
        r, c = np.unravel_index(flat, m.shape)
        size = np.full(r.size, window / s)
        found.append(np.stack([r * stride / s, c * stride / s, size, m[r, c]], 1))
    boxes = np.concatenate(found) if found else np.zeros((0, 4))
    boxes = boxes[np.argsort(-boxes[:, 3], kind="stable")[:top]]
    return non_max_suppression(boxes)


def mine(
    stack: conv_sgd.ConvStack, params: list, photos: tuple[str, ...], limit: int
) -> np.ndarray:
    """The best-scoring windows above 0 of each photo's pyramid (before NMS), as (n, 1, R, R)."""
    window, stride = stack.receptive_field(), stack.stride()
    out = []
    for name in photos:
        image = faces.photo(name)
        cut, sc = [], []
        for s in scales(image.shape, window, MINE_MIN_FACE)[:MAX_MINE_MIN_FACE_LEVELS]:
            level = pyramid_level(image, s)
            m = score_map(stack, params, level)
            r, c = np.nonzero(m > 0.0)
            if not r.size:
                continue
            top = np.argsort(-m[r, c], kind="stable")[:limit]
            r, c = r[top] * stride, c[top] * stride
            cut += [level[i : i + window, j : j + window] for i, j in zip(r, c, strict=True)]
            sc.append(m[r // stride, c // stride])
        if cut:
            best = np.argsort(-np.concatenate(sc), kind="stable")[:limit]
            out.append(np.stack(cut)[best])
    return np.concatenate(out)[:, None] if out else np.zeros((0, 1, window, window))


def photo_scores(
    stack: conv_sgd.ConvStack, params: list, photos: tuple[str, ...]
) -> tuple[np.ndarray, float]:
    """The scores of every box after NMS on `photos`, best first, and their megapixels."""
    megapixels = sum(faces.photo(n).size for n in photos) / 1e6
    scores = np.concatenate([photo_boxes(stack, params, faces.photo(n))[:, 3] for n in photos])
    return np.sort(scores)[::-1], megapixels


def budget_threshold(scores: np.ndarray, megapixels: float, budget: float) -> float:
    """The score of the (allowed + 1)-th best box, allowed = floor(budget * megapixels): the
    photos then keep at most `allowed` boxes (greedy NMS keeps, above any t, the boxes it keeps
    from a lower floor, so one scan serves every t)."""
    allowed = int(budget * megapixels)
    return float(scores[allowed]) if allowed < len(scores) else -5.0


def photo_threshold(
    stack: conv_sgd.ConvStack, params: list, photos: tuple[str, ...], budget: float
) -> float:
    """The threshold that leaves at most floor(budget * MP) boxes on `photos`."""
    return budget_threshold(*photo_scores(stack, params, photos), budget)


def split_sets(recipe: ConvRecipe, seed: int, test_fold: int | None):
    """train / validation / test window sets by source; test_fold None: the shipped split
    (the test fold trains too)."""
    base = faces.base_windows(recipe.photo_windows)
    fold = 0 if test_fold is None else test_fold
    split_seed = seed if recipe.split_seed is None else recipe.split_seed
    train, val, test = faces.split(
        base, fold, recipe.folds, split_seed, recipe.validation_photo_folds
    )
    if test_fold is None:
        train, test = train.plus(test), None
    val_faces = val.take(val.kind != faces.KINDS.index("photo"))
    train = train.plus(val_faces)  # validation sets the threshold on photos only
    val = val.take(val.kind == faces.KINDS.index("photo"))
    return train, val, test


def train(
    recipe: ConvRecipe,
    seed: int,
    test_fold: int | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[OwnDetector, dict[str, Any]]:
    """Search the detector; with `test_fold`, also measure it on that fold (cross-validation)."""
    say = progress or (lambda _msg: None)
    with threadpool_limits(1):  # one core: BLAS threads only fight over a shared machine
        return _train(recipe, seed, test_fold, say)


def member_seeds(recipe: ConvRecipe, seed: int) -> list[int]:
    """The search seeds of the members: the seed itself for one net (the recipe before
    ensembles, bit for bit), else 1000 * seed + k."""
    if recipe.members < 1:
        raise UsageError(f"members must be at least 1, got {recipe.members}")
    return [seed] if recipe.members == 1 else [1000 * seed + k for k in range(recipe.members)]


def _train(recipe: ConvRecipe, seed: int, test_fold: int | None, say: Callable[[str], None]):
    stack = recipe.stack()
    train_ws, val_ws, test_ws = split_sets(recipe, seed, test_fold)
    params: list[np.ndarray] = []
    for k, member_seed in enumerate(member_seeds(recipe, seed)):
        if recipe.members > 1:
            say(f"member {k + 1} of {recipe.members}: seed {member_seed}")
        params += _search(recipe, member_seed, train_ws, say)
    val_photos = faces.training_photo_names(val_ws)
    val_scores, val_mp = photo_scores(stack, params, val_photos)
    threshold = budget_threshold(val_scores, val_mp, recipe.fp_per_megapixel)
    meta: dict[str, Any] = {
        "name": f"own-seed{seed}", "seed": seed, "recipe": asdict(recipe),
        "validation_photos": list(val_photos),
        "training_photos": list(faces.training_photo_names(train_ws)),
    }
    if recipe.members > 1:
        meta["member_seeds"] = member_seeds(recipe, seed)
    det = OwnDetector(stack, tuple(p.astype(np.float64) for p in params), threshold, meta)
    metrics = {} if test_ws is None else fold_metrics(det, test_ws)
    if metrics:  # the best scores, so a CV run can be read at other box budgets afterwards
        metrics["validation_megapixels"] = val_mp
        metrics["validation_box_scores"] = [float(v) for v in val_scores[:KEPT_SCORES]]
    return det, metrics


def _search(
    recipe: ConvRecipe, seed: int, train_ws: faces.WindowSet, say: Callable[[str], None]
) -> list[np.ndarray]:
    """One net: Adam from He initialisation, then the bootstrapping rounds (float32)."""
    stack = recipe.stack()
    side = stack.receptive_field()
    rng = np.random.default_rng(seed)
    train_ws = faces.augment(train_ws, rng, recipe.augment_copies)
    data = Windows(shrink(train_ws.x, side).astype(np.float32), train_ws.y.astype(np.float64))
    photos = faces.training_photo_names(train_ws)
    params = [p.astype(np.float32) for p in conv_sgd.init_params(stack, rng)]

    def report(step: int, loss: float) -> None:
        if step % 250 == 0:
            say(f"step {step}: loss {loss:.4f}")

    say(f"{len(data.y)} windows ({int(data.y.sum())} faces), {len(photos)} photos")
    params = conv_sgd.adam(
        stack, params, sampler(data, recipe.batch), recipe.steps, rng, recipe.lr, recipe.decay,
        report,
    )
    for r in range(recipe.rounds):
        hard = mine(stack, params, photos, recipe.hard_per_photo)
        data = data.plus(hard.astype(np.float32), np.zeros(len(hard)))
        say(f"round {r + 1}: {len(hard)} hard negatives, {len(data.y)} windows")
        last = r == recipe.rounds - 1
        params = conv_sgd.adam(
            stack, params, sampler(data, recipe.batch), recipe.round_steps, rng,
            recipe.lr / 2, recipe.decay, report, recipe.average_last if last else 0,
        )
    return params


def fold_metrics(det: OwnDetector, test: faces.WindowSet) -> dict[str, Any]:
    """Test-fold lfw faces above the threshold, and boxes on the test fold's photos."""
    stack, params = det.stack, list(det.params)
    face_x = shrink(test.x[test.kind == faces.KINDS.index("face")], det.window)
    face_scores = member_scores(stack, params, normalise(face_x))[:, 0, 0, 0]
    box_scores, megapixels = photo_scores(stack, params, faces.training_photo_names(test))
    at_one = budget_threshold(box_scores, megapixels, 1.0)
    return {
        "faces": int(face_scores.size),
        "faces_found": int(np.sum(face_scores > det.threshold)),
        "megapixels": megapixels,
        "boxes": int(np.sum(box_scores > det.threshold)),
        "faces_found_at_1_box_per_megapixel": int(np.sum(face_scores > at_one)),
        "threshold": float(det.threshold),
        "face_scores": [float(v) for v in np.sort(face_scores)[::-1]],
        "test_box_scores": [float(v) for v in box_scores[:KEPT_SCORES]],
    }


def cross_validate(
    recipe: ConvRecipe, seed: int = 0, progress: Callable[[str], None] | None = None
) -> dict[str, Any]:
    """Every fold's metrics and their totals (folds by source, as train.py makes them)."""
    folds = []
    for k in range(recipe.folds):
        _, m = train(recipe, seed, test_fold=k, progress=progress)
        folds.append(m)
        if progress:
            progress(f"fold {k}: {m}")
    counts = ("faces", "faces_found", "megapixels", "boxes", "faces_found_at_1_box_per_megapixel")
    total = {key: sum(f[key] for f in folds) for key in counts}
    return {"folds": folds, "total": total}


def with_changes(recipe: ConvRecipe, **changes: Any) -> ConvRecipe:
    try:
        return replace(recipe, **changes)
    except TypeError as exc:
        raise UsageError(str(exc)) from None


def provenance(det: OwnDetector) -> str:
    meta = det.metadata
    return (
        "templater's own face detector, trained by templater's search (conv_sgd, Adam) on\n"
        "scikit-image's lfw_subset faces and face-free scikit-image / scikit-learn photos.\n"
        f"Seed {meta.get('seed')}; threshold {det.threshold!r} (apply to the 'face' map);\n"
        f"window {det.window}, stride {det.stride}. Use it through "
        "templater.own_detector.find_faces;\n"
        "it takes gray levels in [0, 1] (the input normalisation is folded into conv0).\n"
        "Regenerate: templater train-conv --seed SEED -o DIR"
    )


def write_outputs(det: OwnDetector, out: str, targets: tuple[str, ...] = ("numba",)):
    """model.npz and the compiled float32 program own_numba.py in the folder `out` (the
    pure-Python target has no float32, and find_faces compares float32 maps)."""
    from pathlib import Path

    from templater.conv_compiler import compile_conv
    from templater.fileio import write_atomic
    from templater.own_detector import save

    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{out} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    net = det.network()
    written = []
    for target in targets:
        source = compile_conv(net, target, dtype="float32", provenance=provenance(det))
        written.append(write_atomic(folder / f"own_{target}.py", source))
    save(det, folder / "model.npz")
    return [*written, folder / "model.npz"]
