"""templater's own convolutional face detector: the template, its model file, and find_faces.

The template is one fully convolutional net (in the spirit of Li et al. 2015's 12-net and
MTCNN's PNet): 3x3 convolutions with PReLU, 2x2 max pools, and a 1x1 convolution to one score
channel. Its receptive field is the window (18x18 for the shipped recipe) and its stride the
product of the pool strides (4), so one forward pass over a pyramid level scores every window
of that level: map cell (i, j) is the window whose top-left pixel is (stride*i, stride*j).

Input. The net takes grayscale in [0, 1] (`templater.data.faces.gray`). Its normalisation,
x -> (x - 0.5) / 0.25, is folded into the first convolution's weights and bias (valid
convolutions have no padding, so the fold is exact up to rounding).

find_faces(image, min_face). Pyramid levels at scales s_k = (window / min_face) * 0.8^k, k =
0, 1, ... while min(H, W) * s_k >= window, each made by `templater.scan.pyramid_level` (Gaussian
anti-aliasing, bilinear; float64). Each level is rounded to float32 and scored by the net in
float32 (`ConvNetwork.forward(level, np.float32)`, or the compiled program's `forward`, which
gives the same bits). A cell scoring above the threshold (strictly) becomes the box
(row, col, size, score) = (stride*i / s, stride*j / s, window / s, score) in image pixels;
candidates are listed level by level, row-major; then `templater.scan.non_max_suppression`
(IoU > 0.3 drops the weaker box). The result is an (n, 4) float64 array, best first.

Ensembles. A detector may hold K members (nets of the same template, searched from different
seeds) whose score is the mean of their logits. That is still one ConvNetwork: the members'
first convolutions side by side, the later ones grouped (groups=K, each member reading only its
own channels), and one 1x1 head over all K * C channels with weights / K and the mean bias. So
the compiled program stays one file and the threshold applies to the mean.

Model file. Until ConvNetwork has its own file format this module saves the trained net with
numpy's .npz (no pickle): the template's integers, every parameter array (member after member),
the number of members, and the threshold.
"""

from __future__ import annotations

import json
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from templater.convnet import Conv2D, ConvNetwork, Pool2D, PReLU
from templater.errors import MalformedModelError, UsageError
from templater.search.conv_sgd import ConvStack

# The level's normalisation, folded into the first convolution (see the module docstring).
INPUT_CENTRE = 0.5
INPUT_SCALE = 0.25
PYRAMID_FACTOR = 0.8
DEFAULT_MIN_FACE = 24
OVERLAP = 0.3
HEAD = "face"
FORMAT = "templater-own-detector-npz/1"
GENERATED = Path(__file__).resolve().parent.parent / "generated" / "own"


@dataclass(frozen=True, eq=False)
class OwnDetector:
    """A trained template: the stack, its parameters (training form), and the threshold."""

    stack: ConvStack
    params: tuple[np.ndarray, ...]
    threshold: float
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def window(self) -> int:
        return self.stack.receptive_field()

    @property
    def stride(self) -> int:
        return self.stack.stride()

    @property
    def members(self) -> int:
        return member_count(self.stack, len(self.params))

    def network(self) -> ConvNetwork:
        return to_network(self.stack, list(self.params), self.metadata.get("name", "own"))

    def find_faces(
        self,
        image: Any,
        min_face: float = DEFAULT_MIN_FACE,
        program: types.ModuleType | None = None,
        threshold: float | None = None,
    ) -> np.ndarray:
        """Faces as (row, col, size, score) rows, best first (the module docstring's rule).

        `program`: a compiled program of this net (its `forward`); None runs the numpy reference.
        """
        from templater.scan import non_max_suppression

        img = as_gray(image)
        net = self.network() if program is None else None
        thr = np.float32(self.threshold if threshold is None else threshold)
        found = []
        for s in scales(img.shape, self.window, min_face):
            score = level_map(img, s, net, program)
            rows, cols = np.nonzero(score > thr)
            if rows.size:
                st = float(self.stride)
                found.append(
                    np.stack(
                        [
                            rows * st / s,
                            cols * st / s,
                            np.full(rows.size, self.window / s),
                            score[rows, cols].astype(np.float64),
                        ],
                        axis=1,
                    )
                )
        boxes = np.concatenate(found) if found else np.zeros((0, 4))
        return non_max_suppression(boxes, OVERLAP)


def level_map(
    img: np.ndarray, s: float, net: ConvNetwork | None, program: types.ModuleType | None
) -> np.ndarray:
    """The float32 score map of the pyramid level at scale s."""
    from templater.scan import pyramid_level

    level = pyramid_level(img, s).astype(np.float32)[None]
    if program is not None:
        return np.asarray(program.forward(level)[HEAD])[0]
    assert net is not None
    return net.forward(level, np.float32)[HEAD][0]


def scales(shape: tuple[int, ...], window: int, min_face: float) -> list[float]:
    """The pyramid's scales for an image of `shape`: window/min_face, then steps of 0.8."""
    if isinstance(min_face, bool) or not isinstance(min_face, (int, float, np.number)):
        raise UsageError(f"min_face must be a number, got {min_face!r}")
    if not (np.isfinite(min_face) and min_face >= 4):
        raise UsageError(f"min_face must be a finite number of pixels >= 4, got {min_face!r}")
    first = window / float(min_face)
    out: list[float] = []
    while min(shape[:2]) * first * PYRAMID_FACTOR ** len(out) >= window:
        out.append(first * PYRAMID_FACTOR ** len(out))
    return out


def as_gray(image: Any) -> np.ndarray:
    """A 2-D gray image in [0, 1] as it is; RGB / RGBA (H, W, 3|4) converted by faces.gray."""
    from templater.data.faces import gray
    from templater.scan import check_image

    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] in (3, 4) and arr.dtype.kind in "fiu":
        arr = gray(arr)
    return check_image(arr)


def member_count(stack: ConvStack, n_params: int) -> int:
    """How many members `n_params` arrays hold (each member: 3 per hidden layer, 2 for the head)."""
    per = 3 * len(stack.channels) + 2
    if n_params < per or n_params % per:
        raise MalformedModelError(f"{n_params} arrays do not fit the template ({per} per member)")
    return n_params // per


def split_members(stack: ConvStack, params: list[np.ndarray]) -> list[list[np.ndarray]]:
    """The flat parameter list (member after member) as one list per member."""
    per = 3 * len(stack.channels) + 2
    return [list(params[k * per : (k + 1) * per]) for k in range(member_count(stack, len(params)))]


def to_network(stack: ConvStack, params: list[np.ndarray], name: str = "own") -> ConvNetwork:
    """The trained stack as a ConvNetwork, the input normalisation folded into conv 0; K members
    side by side (conv 0 concatenated, later convs grouped, the head averaging their logits)."""
    nets = split_members(stack, params)
    k = len(nets)
    trunk: list[Any] = []
    for i, pool in enumerate(stack.pools):
        w = np.concatenate([m[3 * i] for m in nets])
        b = np.concatenate([m[3 * i + 1] for m in nets])
        a = np.concatenate([m[3 * i + 2] for m in nets])
        if i == 0:  # conv((x - c) / s) = conv'(x): w' = w / s, b' = b - (c / s) * sum(w)
            b = b - (INPUT_CENTRE / INPUT_SCALE) * w.sum(axis=(1, 2, 3))
            w = w / INPUT_SCALE
        groups = 1 if i == 0 else k  # conv 0 reads the one input channel for every member
        trunk += [Conv2D(w, b, groups=groups, name=f"conv{i}"), PReLU(a, name=f"prelu{i}")]
        if pool:
            trunk.append(Pool2D("max", (2, 2), name=f"pool{i}"))
    if k == 1:  # one net: its head as trained (no division, the same bits as before ensembles)
        w_head, b_head = nets[0][-2], nets[0][-1]
    else:  # the mean of the members' logits: sum over all channels of w / K, plus the mean bias
        w_head = np.concatenate([m[-2] for m in nets], axis=1) / k
        b_head = np.mean([m[-1] for m in nets], axis=0)
    head = Conv2D(w_head, b_head, name="score")
    return ConvNetwork(1, tuple(trunk), ((HEAD, (head,)),), name=name)


def member_scores(stack: ConvStack, params: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    """Score maps (N, 1, OH, OW) of normalised inputs by the fast (im2col) training forward: the
    mean of the members' logits (one member: its own map, untouched)."""
    from templater.search import conv_sgd

    nets = split_members(stack, params)
    if len(nets) == 1:
        return conv_sgd.forward(stack, nets[0], x)[0]
    return np.mean([conv_sgd.forward(stack, m, x)[0] for m in nets], axis=0)


def normalise(x: np.ndarray) -> np.ndarray:
    """Windows in [0, 1] as the training search sees them (the fold's other side)."""
    return (x - INPUT_CENTRE) / INPUT_SCALE


# -- the model file --------------------------------------------------------------------------
def save(det: OwnDetector, path: str | os.PathLike) -> None:
    """Write the detector as .npz (numeric arrays and one JSON string; no pickle), atomically."""
    import io

    from templater.fileio import write_atomic

    arrays = {f"p{i}": np.asarray(p, dtype=np.float64) for i, p in enumerate(det.params)}
    header = {
        "format": FORMAT,
        "channels": list(det.stack.channels),
        "kernels": list(det.stack.kernels),
        "pools": [bool(p) for p in det.stack.pools],
        "head_kernel": det.stack.head_kernel,
        "members": det.members,
        "threshold": float(det.threshold),
        "metadata": det.metadata,
    }
    buffer = io.BytesIO()
    np.savez(buffer, header=np.array(json.dumps(header, sort_keys=True)), **arrays)
    write_atomic(path, buffer.getvalue())


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether `path` is a file `save` wrote (its JSON header names FORMAT); anything unreadable
    is not (templater's other .npz model files hold their headers as bytes)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive, archive.open("header.npy") as member:
            header = np.load(member, allow_pickle=False)
            return header.dtype.kind == "U" and json.loads(str(header)).get("format") == FORMAT
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError, AttributeError):
        return False


def load(path: str | os.PathLike = GENERATED / "model.npz") -> OwnDetector:
    """Read a detector written by `save` (allow_pickle=False; shapes checked by to_network)."""
    try:
        with np.load(Path(path), allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            params = [np.array(data[f"p{i}"]) for i in range(len(data.files) - 1)]
    except (OSError, ValueError, KeyError) as exc:
        raise MalformedModelError(f"{path}: not an own-detector model file ({exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise MalformedModelError(f"{path}: not an own-detector model file ({FORMAT})")
    try:
        stack = ConvStack(
            tuple(int(c) for c in header["channels"]),
            tuple(int(k) for k in header["kernels"]),
            tuple(bool(p) for p in header["pools"]),
            int(header["head_kernel"]),
        )
        threshold = float(header["threshold"])
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedModelError(f"{path}: bad header ({exc})") from None
    members = int(header.get("members", 1))  # files before ensembles hold one net
    if len(params) != members * (3 * len(stack.channels) + 2):
        raise MalformedModelError(f"{path}: {len(params)} arrays do not fit the template")
    det = OwnDetector(stack, tuple(params), threshold, dict(header.get("metadata") or {}))
    det.network()  # checks every shape
    return det


def find_faces(image: Any, min_face: float = DEFAULT_MIN_FACE) -> np.ndarray:
    """The committed detector (generated/own) through its compiled float32 Numba program."""
    from templater.programs import import_program

    det = load(GENERATED / "model.npz")
    return det.find_faces(image, min_face, program=import_program(GENERATED / "own_numba.py"))
