"""Runners of MTCNN's three nets for templater.mtcnn_cascade: the numpy reference, onnxruntime,
and any compiled program; `detect(image, runner)` runs the cascade with one of them.

The Keras-converted nets were trained on transposed images (x along the first axis), so every
runner swaps rows and columns on the way in and back on the way out; the cascade sees images
in natural orientation. Heads: PNet 'conv2d_4' (box offsets) and 'softmax' (non-face, face);
RNet 'dense_2' and 'softmax_1'; ONet 'dense_5' (offsets), 'dense_6' (landmarks: five x then five
y) and 'softmax_2'.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from templater import mtcnn_cascade
from templater.mtcnn_files import onnx_path

HEADS = {
    "pnet": ("conv2d_4", "softmax"),
    "rnet": ("dense_2", "softmax_1"),
    "onet": ("dense_5", "dense_6", "softmax_2"),
}


def _transposed(images: np.ndarray) -> np.ndarray:
    """(..., rows, cols, 3) -> (..., cols, rows, 3), contiguous float32."""
    return np.ascontiguousarray(np.swapaxes(images, -3, -2), dtype=np.float32)


class _HeadNets:
    """The cascade's interface over `run(net, batch) -> {head: array}` on NHWC batches."""

    def run(self, net: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def pnet(self, level: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.run("pnet", _transposed(level)[None])
        reg, prob = (np.asarray(out[h])[0] for h in HEADS["pnet"])  # NHWC, transposed image
        return prob[:, :, 1].T, reg.transpose(2, 1, 0)

    def rnet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.run("rnet", _transposed(crops))
        reg, prob = (np.asarray(out[h]) for h in HEADS["rnet"])
        return prob[:, 1], reg

    def onet(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = self.run("onet", _transposed(crops))
        reg, marks, prob = (np.asarray(out[h]) for h in HEADS["onet"])
        return prob[:, 1], reg, marks


def _nhwc(out: dict[str, Any]) -> dict[str, np.ndarray]:
    """Maps (N, C, H, W) from templater's forward -> NHWC like onnxruntime's outputs."""
    res = {}
    for name, value in out.items():
        arr = np.asarray(value)
        res[name] = arr.transpose(0, 2, 3, 1) if arr.ndim == 4 else arr
    return res


class ReferenceNets(_HeadNets):
    """templater's numpy reference of the three nets (ConvNetwork.forward), float32 by default."""

    def __init__(self, dtype: Any = np.float32) -> None:
        from templater.importers.onnx_conv import from_onnx_conv

        self.dtype = dtype
        self.nets = {name: from_onnx_conv(onnx_path(name)) for name in HEADS}

    def run(self, net: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return _empty(net, batch)
        return _nhwc(self.nets[net].forward(batch, self.dtype))


class OnnxRuntimeNets(_HeadNets):
    """The package's .onnx files through onnxruntime: one thread, float32."""

    def __init__(self, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = threads
        self.sessions = {
            name: ort.InferenceSession(
                str(onnx_path(name)), options, providers=["CPUExecutionProvider"]
            )
            for name in HEADS
        }

    def run(self, net: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return _empty(net, batch)
        session = self.sessions[net]
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, {session.get_inputs()[0].name: batch})
        return dict(zip(names, values, strict=True))


class ProgramNets(_HeadNets):
    """Compiled programs (`compile_conv(net, target, dtype="float32")`, loaded as modules): any
    objects with `forward(image)` and, for RNet and ONet, optionally `forward_batch(images)`,
    returning dicts keyed by head name (maps as (channels, rows, cols))."""

    def __init__(self, pnet: Any, rnet: Any, onet: Any) -> None:
        self.programs = {"pnet": pnet, "rnet": rnet, "onet": onet}

    def run(self, net: str, batch: np.ndarray) -> dict[str, np.ndarray]:
        if len(batch) == 0:
            return _empty(net, batch)
        program = self.programs[net]
        if hasattr(program, "forward_batch"):
            return _nhwc(program.forward_batch(batch))
        outs = [program.forward(image) for image in batch]
        stacked = {h: np.stack([np.asarray(o[h]) for o in outs]) for h in HEADS[net]}
        return _nhwc(stacked)


def _empty(net: str, batch: np.ndarray) -> dict[str, np.ndarray]:
    sizes = {"dense_2": 4, "softmax_1": 2, "dense_5": 4, "dense_6": 10, "softmax_2": 2}
    return {h: np.empty((0, sizes[h]), dtype=np.float32) for h in HEADS[net]}


def detect(image: Any, nets: Any, min_face: int = 20, **kwargs: Any):
    """`mtcnn_cascade.find_faces(image, nets, min_face, ...)`: boxes, scores, landmarks."""
    return mtcnn_cascade.find_faces(image, nets, min_face=min_face, **kwargs)
