"""Baselines: the peers a generated program is measured against, in the same run.

numpy float64 and float32 forward passes, a plain numba loop over weight arrays, onnxruntime,
a numpy im2col + matmul face scan, and scikit-image's LBP cascade.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from templater.bench.timing import median_seconds
from templater.network import Network
from templater.scan_defaults import DEFAULT_OVERLAP, DEFAULT_SCALES, DEFAULT_STRIDE


def numpy_forward(net: Network, dtype: type) -> Callable[[np.ndarray], np.ndarray]:
    """The plain numpy forward pass (BLAS matmuls) in `dtype`: the baseline."""
    params = [(d.weights.astype(dtype), d.bias.astype(dtype)) for d in net.layers]

    def forward(x: np.ndarray) -> np.ndarray:
        h = x
        for k, (w, b) in enumerate(params):
            h = h @ w + b
            if k < len(params) - 1:
                h = np.maximum(h, 0)
        return h

    return forward


def plain_numba(
    net: Network, dtype: type = np.float64
) -> tuple[Callable[[np.ndarray], float], Callable[..., float]]:
    """A plain numba forward pass over weight arrays (neuron-major dot products, no literals)
    in `dtype`, and a loop calling it over rows (of that dtype)."""
    from numba import njit
    from numba.typed import List

    weights, biases = List(), List()
    for d in net.layers:
        weights.append(np.ascontiguousarray(d.weights, dtype=dtype))
        biases.append(np.ascontiguousarray(d.bias, dtype=dtype))

    @njit(cache=False)
    def forward(x, weights, biases):
        h = x
        for k in range(len(weights)):
            w, b = weights[k], biases[k]
            out = np.empty(w.shape[1], dtype=w.dtype)
            for j in range(w.shape[1]):
                acc = b[j]
                for i in range(w.shape[0]):
                    acc += h[i] * w[i, j]
                out[j] = acc if (k == len(weights) - 1 or acc > 0.0) else 0.0
            h = out
        return h[0]

    @njit(cache=False)
    def loop(rows, weights, biases):
        total = 0.0
        for r in range(rows.shape[0]):
            total += forward(rows[r], weights, biases)
        return total

    return (lambda x: forward(x, weights, biases)), (lambda rows: loop(rows, weights, biases))


def kernel_loop(kernel: Any) -> Callable[[np.ndarray], float]:
    """An njit loop calling the program's `_kernel` on each row, as a scanner calls it."""
    from numba import njit

    @njit(cache=False)
    def loop(rows):
        total = 0.0
        for r in range(rows.shape[0]):
            total += kernel(rows[r])
        return total

    return loop


def onnx_session(net: Network) -> Any:
    """An onnxruntime session for the same network, exported as a float32 ONNX graph."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits, h = [], [], "x"
    for k, d in enumerate(net.layers):
        inits.append(numpy_helper.from_array(d.weights.astype(np.float32), f"W{k}"))
        inits.append(numpy_helper.from_array(d.bias.astype(np.float32), f"B{k}"))
        nodes.append(helper.make_node("MatMul", [h, f"W{k}"], [f"m{k}"]))
        nodes.append(helper.make_node("Add", [f"m{k}", f"B{k}"], [f"a{k}"]))
        h = f"a{k}"
        if k < len(net.layers) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"r{k}"]))
            h = f"r{k}"
    graph = helper.make_graph(
        nodes,
        "bench",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, net.input_size])],
        [helper.make_tensor_value_info(h, TensorProto.FLOAT, [None, 1])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def im2col_scan(
    net: Network,
    image: np.ndarray,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    stride: int = DEFAULT_STRIDE,
    band: int = 16,
) -> np.ndarray:
    """The numpy baseline scan: the same windows as rows (im2col), one BLAS matmul per layer.

    Windows are gathered a band of `band` window rows at a time (bounded memory); the window
    normalisation and the layers run on the whole band with numpy's pairwise sums and BLAS, so
    scores match the programs' to ~1e-12, not bit for bit.
    """
    from templater import scan

    window = scan.WINDOW
    found = []
    for s in scales:
        level = scan.pyramid_level(image, s)
        if min(level.shape) < window:
            continue
        view = np.lib.stride_tricks.sliding_window_view(level, (window, window))
        rows = np.arange(0, level.shape[0] - window + 1, stride)
        cols = np.arange(0, level.shape[1] - window + 1, stride)
        for start in range(0, len(rows), band):
            r = rows[start : start + band]
            x = view[r[:, None], cols[None, :]].reshape(-1, window * window)
            if net.normalization.kind == "window":
                d = x - x.mean(axis=1, keepdims=True)
                x = d / (np.sqrt((d * d).mean(axis=1, keepdims=True)) + net.normalization.eps)
            for layer in net.layers:
                x = layer.activation.apply(x @ layer.weights + layer.bias)
            score = x[:, 0]
            keep = np.flatnonzero(score > net.head.threshold)
            rr, cc = r[keep // len(cols)], cols[keep % len(cols)]
            found.append(
                np.stack([rr / s, cc / s, np.full(len(keep), window / s), score[keep]], 1)
            )
    boxes = np.concatenate(found) if found else np.zeros((0, 4))
    return scan.non_max_suppression(boxes, DEFAULT_OVERLAP)


def cascade_seconds(image: np.ndarray, repeats: int) -> float:
    """scikit-image's LBP frontal-face cascade over the image, median seconds."""
    from skimage import data
    from skimage.feature import Cascade

    detector = Cascade(data.lbp_frontal_face_cascade_filename())
    return median_seconds(
        lambda: detector.detect_multi_scale(
            image, scale_factor=1.25, step_ratio=1, min_size=(25, 25), max_size=(50, 50)
        ),
        1,
        repeats,
    )
