"""Backpropagation and Adam for small fully convolutional nets (conv, PReLU, max pool).

The search trains a plain stack described by `ConvStack`: valid (unpadded) stride-1 convolutions,
each followed by a per-channel PReLU, some by a 2x2 max pool (stride 2, floor), and a last
convolution whose single output channel is the score (a logit). Convolutions run as im2col
matrix products (fast, not in the reference's summation order: training needs speed, the
trained net is then frozen into a `ConvNetwork` whose `forward` defines the decisions).

Parameters are a flat list of arrays, [w0, b0, a0, w1, b1, a1, ..., w_last, b_last] (a: PReLU
slopes), so Adam treats them uniformly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


@dataclass(frozen=True)
class ConvStack:
    """`channels[i]` outputs and `kernels[i]` sides for each hidden convolution; `pools[i]`:
    a 2x2 max pool after it; then a `head_kernel` convolution to one score channel."""

    channels: tuple[int, ...]
    kernels: tuple[int, ...]
    pools: tuple[bool, ...]
    head_kernel: int = 1

    def receptive_field(self) -> int:
        need = self.head_kernel
        for k, pool in zip(reversed(self.kernels), reversed(self.pools), strict=True):
            if pool:
                need = need * 2
            need = need + k - 1
        return need

    def stride(self) -> int:
        return 2 ** sum(self.pools)


def init_params(stack: ConvStack, rng: np.random.Generator) -> list[np.ndarray]:
    """He-initialised weights, zero biases, PReLU slopes 0.25 (as PyTorch starts them)."""
    params: list[np.ndarray] = []
    cin = 1
    for cout, k in zip(stack.channels, stack.kernels, strict=True):
        fan_in = cin * k * k
        params.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), (cout, cin, k, k)))
        params.append(np.zeros(cout))
        params.append(np.full(cout, 0.25))
        cin = cout
    k = stack.head_kernel
    params.append(rng.normal(0.0, np.sqrt(1.0 / (cin * k * k)), (1, cin, k, k)))
    params.append(np.zeros(1))
    return params


def im2col(x: np.ndarray, k: int) -> np.ndarray:
    """(N, C, H, W) -> (N * OH * OW, C * k * k), rows in (n, y, x) order, columns (c, ky, kx)."""
    n, c, h, w = x.shape
    win = sliding_window_view(x, (k, k), axis=(2, 3))  # (N, C, OH, OW, k, k)
    oh, ow = h - k + 1, w - k + 1
    return np.ascontiguousarray(win.transpose(0, 2, 3, 1, 4, 5)).reshape(n * oh * ow, c * k * k)


def conv_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Valid stride-1 convolution (cross-correlation); returns the output and the im2col cache."""
    n, _, h, wd = x.shape
    o, _, k, _ = w.shape
    cols = im2col(x, k)
    out = cols @ w.reshape(o, -1).T + b
    oh, ow = h - k + 1, wd - k + 1
    return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2), cols


def conv_backward(
    dout: np.ndarray,
    cols: np.ndarray,
    x_shape: tuple[int, ...],
    w: np.ndarray,
    need_dx: bool = True,
) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gradients (dx, dw, db) of `conv_forward` given the output gradient; dx is the "full"
    correlation of the output gradient with the flipped kernel (one im2col product)."""
    o, c, k, _ = w.shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, o)
    dw = (d2.T @ cols).reshape(w.shape)
    db = d2.sum(axis=0)
    if not need_dx:
        return None, dw, db
    n, _, h, wd = x_shape
    padded = np.pad(dout, ((0, 0), (0, 0), (k - 1, k - 1), (k - 1, k - 1)))
    flipped = w[:, :, ::-1, ::-1].transpose(0, 2, 3, 1).reshape(o * k * k, c)
    dx = im2col(padded, k) @ flipped
    return dx.reshape(n, h, wd, c).transpose(0, 3, 1, 2), dw, db


def prelu_forward(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.where(x > 0.0, x, a[None, :, None, None] * x)


def prelu_backward(dout: np.ndarray, x: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    positive = x > 0.0
    dx = np.where(positive, dout, a[None, :, None, None] * dout)
    da = np.where(positive, 0.0, x * dout).sum(axis=(0, 2, 3))
    return dx, da


def pool_forward(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """2x2 max pool, stride 2, floor; returns the output and the (first) argmax of each window."""
    n, c, h, w = x.shape
    oh, ow = h // 2, w // 2
    blocks = x[:, :, : 2 * oh, : 2 * ow].reshape(n, c, oh, 2, ow, 2).transpose(0, 1, 2, 4, 3, 5)
    flat = blocks.reshape(n, c, oh, ow, 4)
    arg = flat.argmax(axis=-1)  # the first maximum in (ky, kx) order, as the reference picks
    return np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0], arg


def pool_backward(dout: np.ndarray, arg: np.ndarray, x_shape: tuple[int, ...]) -> np.ndarray:
    n, c = x_shape[:2]
    oh, ow = dout.shape[2:]
    flat = np.zeros((n, c, oh, ow, 4), dtype=dout.dtype)
    np.put_along_axis(flat, arg[..., None], dout[..., None], axis=-1)
    blocks = flat.reshape(n, c, oh, ow, 2, 2).transpose(0, 1, 2, 4, 3, 5)
    dx = np.zeros(x_shape, dtype=dout.dtype)
    dx[:, :, : 2 * oh, : 2 * ow] = blocks.reshape(n, c, 2 * oh, 2 * ow)
    return dx


def forward(
    stack: ConvStack, params: list[np.ndarray], x: np.ndarray, keep: bool = False
) -> tuple[np.ndarray, list]:
    """The score maps (N, 1, OH, OW) of images x (N, 1, H, W); with `keep`, the caches."""
    caches = []
    h = x
    for i, pool in enumerate(stack.pools):
        w, b, a = params[3 * i : 3 * i + 3]
        z, cols = conv_forward(h, w, b)
        y = prelu_forward(z, a)
        arg = None
        pooled_from = y.shape
        if pool:
            y, arg = pool_forward(y)
        if keep:
            caches.append((h.shape, cols, z, arg, pooled_from))
        h = y
    w, b = params[-2:]
    out, cols = conv_forward(h, w, b)
    if keep:
        caches.append((h.shape, cols))
    return out, caches


def backward(
    stack: ConvStack, params: list[np.ndarray], caches: list, dout: np.ndarray
) -> list[np.ndarray]:
    """The gradient of every parameter, given d(loss)/d(score map)."""
    grads: list[np.ndarray] = [np.zeros(0)] * len(params)
    shape, cols = caches[-1]
    dh, grads[-2], grads[-1] = conv_backward(dout, cols, shape, params[-2])
    for i in reversed(range(len(stack.pools))):
        shape, cols, z, arg, pooled_from = caches[i]
        w, _, a = params[3 * i : 3 * i + 3]
        if stack.pools[i]:
            dh = pool_backward(dh, arg, pooled_from)
        dz, grads[3 * i + 2] = prelu_backward(dh, z, a)
        dh, grads[3 * i], grads[3 * i + 1] = conv_backward(dz, cols, shape, w, need_dx=i > 0)
    return grads


def logistic_loss(
    logits: np.ndarray, y: np.ndarray, weight: np.ndarray
) -> tuple[float, np.ndarray]:
    """Weighted mean of log(1 + exp(-t z)) (t = +-1) and its gradient in the logits."""
    t = 2.0 * y - 1.0
    m = -t * logits
    loss = np.logaddexp(0.0, m)
    total = weight.sum()
    sig = 0.5 * (1.0 + np.tanh(0.5 * m))  # sigmoid(m), without overflow
    return float((weight * loss).sum() / total), -t * sig * weight / total


def loss_and_grads(
    stack: ConvStack,
    params: list[np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    weight: np.ndarray,
    decay: float = 0.0,
) -> tuple[float, list[np.ndarray]]:
    """Loss of windows x (N, 1, R, R) whose maps are 1x1, plus `decay`/2 * |weights|^2."""
    out, caches = forward(stack, params, x, keep=True)
    loss, dz = logistic_loss(out[:, 0, 0, 0], y, weight)
    grads = backward(stack, params, caches, dz.reshape(out.shape).astype(out.dtype))
    for i in range(0, len(params), 1):
        if params[i].ndim == 4 and decay:
            loss += 0.5 * decay * float((params[i] ** 2).sum())
            grads[i] = grads[i] + decay * params[i]
    return loss, grads


def adam(
    stack: ConvStack,
    params: list[np.ndarray],
    data: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray, np.ndarray]],
    steps: int,
    rng: np.random.Generator,
    lr: float = 2e-3,
    decay: float = 1e-4,
    report: Callable[[int, float], None] | None = None,
    average_last: int = 0,
) -> list[np.ndarray]:
    """`steps` Adam steps on mini-batches drawn by `data(rng)`; the learning rate falls linearly
    to a tenth over the run (steadier last steps, so seeds end closer together).

    With `average_last` = n > 0, the result is the mean of the weights after each of the last n
    steps (Polyak averaging: still one net, with less of the last mini-batches' noise)."""
    beta1, beta2 = 0.9, 0.999
    average_last = min(max(int(average_last), 0), steps)
    total = [np.zeros(p.shape, np.float64) for p in params] if average_last else None
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    params = [p.copy() for p in params]
    for step in range(1, steps + 1):
        x, y, weight = data(rng)
        loss, grads = loss_and_grads(stack, params, x, y, weight, decay)
        rate = lr * (1.0 - 0.9 * (step - 1) / max(steps - 1, 1))
        for p, g, mi, vi in zip(params, grads, m, v, strict=True):
            mi *= beta1
            mi += (1.0 - beta1) * g
            vi *= beta2
            vi += (1.0 - beta2) * g * g
            p -= rate * (mi / (1.0 - beta1**step)) / (np.sqrt(vi / (1.0 - beta2**step)) + 1e-8)
        if total is not None and step > steps - average_last:
            for t, p in zip(total, params, strict=True):
                t += p
        if report is not None:
            report(step, loss)
    if total is not None:
        return [(t / average_last).astype(p.dtype) for t, p in zip(total, params, strict=True)]
    return params
