"""The face / non-face window set: lfw_subset, photo negatives, augmentation, splits by source.

Sources. Each of the 200 `skimage.data.lfw_subset()` windows is its own source (the first 100
are faces, the last 100 not). Each face-free scikit-image photo in `TRAINING_PHOTOS` is one
source: all windows cut from it (random ones and bootstrapped false positives) share its group, so
a split by group never trains on a copy or a neighbour of a test window. `HELD_OUT_PHOTOS` are
never used by anything here: the detector's tests count false positives on them. Photos with
faces (astronaut, camera) are not used at all.

Windows are float64 rows of 625 pixels (25x25, row-major) in [0, 1]; the model normalises each
window itself (`Normalization('window')`), so the search trains on normalised copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from templater.errors import UsageError
from templater.scan import (
    DEFAULT_SCALES,
    WINDOW,
    level_scores,
    pyramid_level,
    window_positions,
)

# Face-free photos that ship with scikit-image and scikit-learn (all offline).
TRAINING_PHOTOS = (
    "brick",
    "cell",
    "chelsea",
    "checkerboard",
    "china",
    "clock",
    "coins",
    "colorwheel",
    "flower",
    "grass",
    "gravel",
    "horse",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "microaneurysms",
    "moon",
    "motorcycle",
    "page",
    "retina",
    "shepp_logan_phantom",
    "text",
)
HELD_OUT_PHOTOS = ("rocket", "coffee")
N_LFW = 200
N_LFW_FACES = 100
KINDS = ("face", "lfw_nonface", "photo")


@dataclass(frozen=True, eq=False)
class WindowSet:
    """Windows `x` (n, 625), labels `y` (1 face, 0 not), the source `group` of each, its kind."""

    x: np.ndarray
    y: np.ndarray
    group: np.ndarray
    kind: np.ndarray  # index into KINDS
    group_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def take(self, mask: np.ndarray) -> WindowSet:
        return WindowSet(
            self.x[mask], self.y[mask], self.group[mask], self.kind[mask], self.group_names
        )

    def plus(self, other: WindowSet) -> WindowSet:
        if other.group_names != self.group_names:
            raise ValueError("window sets with different groups")
        return WindowSet(
            np.concatenate([self.x, other.x]),
            np.concatenate([self.y, other.y]),
            np.concatenate([self.group, other.group]),
            np.concatenate([self.kind, other.kind]),
            self.group_names,
        )


def gray(image: np.ndarray) -> np.ndarray:
    """Any scikit-image picture as float64 grayscale in [0, 1] (RGBA is composited on white)."""
    from skimage import color, util

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = color.rgba2rgb(arr)
    if arr.ndim == 3:
        arr = color.rgb2gray(arr)
    return np.asarray(util.img_as_float64(arr), dtype=np.float64)


@cache
def photo(name: str) -> np.ndarray:
    """A bundled photo by name, as grayscale in [0, 1] (read-only; cached).

    Names are scikit-image's `skimage.data` loaders, plus `china` and `flower` (scikit-learn's
    sample images) and `motorcycle` (the left image of skimage's stereo pair).
    """
    from skimage import data

    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_image

        raw = load_sample_image(f"{name}.jpg")
    elif name == "motorcycle":
        raw = data.stereo_motorcycle()[0]
    else:
        loader = getattr(data, name, None)
        if loader is None:
            raise UsageError(f"scikit-image has no photo {name!r}")
        raw = loader()
    out = gray(raw)
    out.setflags(write=False)
    return out


def base_windows(photo_windows: int = 150, seed: int = 0) -> WindowSet:
    """The un-augmented set: 200 lfw_subset windows plus random windows from the training photos.

    Photo windows are cut at random positions of random pyramid levels (the scan's scales), so
    they look like what the detector sees.
    """
    from skimage import data

    lfw = np.asarray(data.lfw_subset(), dtype=np.float64).reshape(N_LFW, WINDOW * WINDOW)
    names = [f"lfw:{i}" for i in range(N_LFW)] + [f"photo:{p}" for p in TRAINING_PHOTOS]
    rng = np.random.default_rng(seed)
    xs = [lfw]
    ys = [np.r_[np.ones(N_LFW_FACES), np.zeros(N_LFW - N_LFW_FACES)]]
    groups = [np.arange(N_LFW)]
    kinds = [np.r_[np.zeros(N_LFW_FACES), np.ones(N_LFW - N_LFW_FACES)]]
    for index, name in enumerate(TRAINING_PHOTOS):
        image = photo(name)
        levels = [pyramid_level(image, s) for s in DEFAULT_SCALES]
        levels = [lv for lv in levels if min(lv.shape) >= WINDOW]
        cut = np.empty((photo_windows, WINDOW * WINDOW))
        for k in range(photo_windows):
            lv = levels[int(rng.integers(len(levels)))]
            r = int(rng.integers(lv.shape[0] - WINDOW + 1))
            c = int(rng.integers(lv.shape[1] - WINDOW + 1))
            cut[k] = lv[r : r + WINDOW, c : c + WINDOW].ravel()
        xs.append(cut)
        ys.append(np.zeros(photo_windows))
        groups.append(np.full(photo_windows, N_LFW + index))
        kinds.append(np.full(photo_windows, 2))
    return WindowSet(
        np.concatenate(xs),
        np.concatenate(ys).astype(np.int64),
        np.concatenate(groups).astype(np.int64),
        np.concatenate(kinds).astype(np.int64),
        tuple(names),
    )


def augment(ws: WindowSet, rng: np.random.Generator, copies: int = 8) -> WindowSet:
    """The windows plus `copies` altered copies of each lfw window (photo windows are plentiful).

    Each copy (as Rowley, Baluja and Kanade varied their faces): rotated by up to 15 degrees,
    scaled by 0.9-1.1 and shifted by up to 1.5 pixels about the centre (bilinear, edges
    repeated), mirrored with probability 1/2, and given a random contrast (0.7-1.3) and
    brightness (-0.15..0.15), clipped to [0, 1]. A copy keeps its source's group.
    """
    from scipy import ndimage

    pick = np.flatnonzero(ws.kind != 2)
    if copies <= 0 or not pick.size:
        return ws
    src = np.repeat(pick, copies)
    imgs = ws.x[src].reshape(-1, WINDOW, WINDOW)
    out = np.empty_like(imgs)
    angle = np.deg2rad(rng.uniform(-15.0, 15.0, len(src)))
    zoom = rng.uniform(0.9, 1.1, len(src))
    shift = rng.uniform(-1.5, 1.5, (len(src), 2))
    mirror = rng.random(len(src)) < 0.5
    contrast = rng.uniform(0.7, 1.3, len(src))
    brightness = rng.uniform(-0.15, 0.15, len(src))
    centre = np.full(2, (WINDOW - 1) / 2.0)
    for k in range(len(src)):
        cos, sin = np.cos(angle[k]) / zoom[k], np.sin(angle[k]) / zoom[k]
        matrix = np.array([[cos, -sin], [sin, cos]])
        offset = centre - matrix @ centre + shift[k]
        w = ndimage.affine_transform(imgs[k], matrix, offset=offset, order=1, mode="nearest")
        if mirror[k]:
            w = w[:, ::-1]
        mean = w.mean()
        out[k] = np.clip((w - mean) * contrast[k] + mean + brightness[k], 0.0, 1.0)
    extra = WindowSet(
        out.reshape(len(src), -1), ws.y[src], ws.group[src], ws.kind[src], ws.group_names
    )
    return ws.plus(extra)


def group_folds(ws: WindowSet, k: int, seed: int) -> np.ndarray:
    """A fold number (0..k-1) for every group, dealt out per kind so each fold has every kind."""
    if k < 2:
        raise UsageError(f"need at least 2 folds, got {k}")
    n_groups = len(ws.group_names)
    fold = np.full(n_groups, -1, dtype=np.int64)
    rng = np.random.default_rng(seed)
    for kind in range(len(KINDS)):
        groups = np.unique(ws.group[ws.kind == kind])
        if len(groups) < k:
            raise UsageError(f"{len(groups)} {KINDS[kind]} sources cannot fill {k} folds")
        order = rng.permutation(groups)
        fold[order] = np.arange(len(order)) % k
    return fold


def split(
    ws: WindowSet, test_fold: int, k: int, seed: int, photo_val_folds: int = 1
) -> tuple[WindowSet, WindowSet, WindowSet]:
    """Train / validation / test by source: fold `test_fold` tests, the next validates.

    `photo_val_folds` > 1 also moves the photos (not the lfw windows) of the folds after that to
    validation: the detector's threshold is set on face-free photos it never saw, and more of
    them make that threshold steadier, while the scarce faces stay in training.
    """
    if not 1 <= photo_val_folds <= k - 2:
        raise UsageError(f"photo validation folds must be 1 to {k - 2}, got {photo_val_folds}")
    fold = group_folds(ws, k, seed)[ws.group]
    test = fold == test_fold
    val = fold == (test_fold + 1) % k
    for extra in range(2, photo_val_folds + 1):
        val |= (fold == (test_fold + extra) % k) & (ws.kind == 2)
    return ws.take(~(test | val)), ws.take(val), ws.take(test)


def training_photo_names(ws: WindowSet) -> tuple[str, ...]:
    """The photos a (training) window set draws from."""
    present = np.unique(ws.group[ws.kind == 2])
    return tuple(ws.group_names[g].removeprefix("photo:") for g in present)


def hard_negatives(
    net: object,
    photos: Sequence[str],
    ws_like: WindowSet,
    threshold: float,
    limit_per_photo: int,
    scales: Sequence[float] = DEFAULT_SCALES,
    stride: int = 4,
) -> WindowSet:
    """False positives of `net` on face-free photos, as non-face windows (bootstrapping).

    Scans each photo like the detector does and keeps, per photo, up to `limit_per_photo` of the
    highest-scoring windows above `threshold`; each keeps its photo's group.
    """
    xs, groups = [], []
    for name in photos:
        gid = ws_like.group_names.index(f"photo:{name}")
        found_x, found_s = [], []
        for s in scales:
            lv = pyramid_level(photo(name), s)
            scores = level_scores(net, lv, stride)  # type: ignore[arg-type]
            keep = np.flatnonzero(scores > threshold)
            if not keep.size:
                continue
            # Cut out only the kept windows: all of a level's windows would not fit in memory.
            keep = keep[np.argsort(-scores[keep], kind="stable")[:limit_per_photo]]
            spots = window_positions(lv, stride)[keep]
            found_x.append(np.stack([lv[r : r + WINDOW, c : c + WINDOW].ravel() for r, c in spots]))
            found_s.append(scores[keep])
        if not found_x:
            continue
        px, sc = np.concatenate(found_x), np.concatenate(found_s)
        top = np.argsort(-sc, kind="stable")[:limit_per_photo]
        xs.append(px[top])
        groups.append(np.full(len(top), gid))
    if not xs:
        empty = np.zeros(0, dtype=np.int64)
        return WindowSet(np.zeros((0, WINDOW * WINDOW)), empty, empty, empty, ws_like.group_names)
    group = np.concatenate(groups).astype(np.int64)
    n = len(group)
    return WindowSet(
        np.concatenate(xs),
        np.zeros(n, dtype=np.int64),
        group,
        np.full(n, 2, dtype=np.int64),
        ws_like.group_names,
    )
