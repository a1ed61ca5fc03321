"""The template and its objective: class-balanced logistic loss, forward and backprop in numpy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from templater.errors import UsageError
from templater.network import Activation, Dense

# Activations a template may use: softmax has no place in a one-score binary template.
TRAINABLE = ("identity", "relu", "leaky_relu", "sigmoid", "tanh", "hard_sigmoid", "step", "clip")


def activation_grad(act: Activation, h: np.ndarray, out: np.ndarray) -> np.ndarray:
    """d act(h) / dh elementwise, given the pre-activation `h` and `out = act(h)`.

    At kinks (relu at 0, the ends of clip and hard_sigmoid) the derivative of the side the
    reference's `where` picks for that point is used; step has derivative 0 everywhere.
    """
    name = act.name
    if name == "identity":
        return np.ones_like(h)
    if name == "relu":
        return (h > 0.0).astype(np.float64)
    if name == "leaky_relu":
        return np.where(h > 0.0, 1.0, act.alpha)
    if name == "sigmoid":
        return out * (1.0 - out)
    if name == "tanh":
        return 1.0 - out * out
    if name == "hard_sigmoid":
        t = act.alpha * h + act.beta
        return np.where((t >= 0.0) & (t <= 1.0), act.alpha, 0.0)
    if name == "clip":
        return ((h >= act.alpha) & (h <= act.beta)).astype(np.float64)
    if name == "step":
        return np.zeros_like(h)
    raise UsageError(f"activation {name!r} cannot be trained; trainable: {', '.join(TRAINABLE)}")


@dataclass(frozen=True)
class Template:
    """Layer sizes (inputs first) and one activation per layer: the program with holes."""

    sizes: tuple[int, ...]
    activations: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.sizes) < 2 or any(n < 1 for n in self.sizes):
            raise UsageError(f"a template needs positive layer sizes, got {self.sizes}")
        if len(self.activations) != len(self.sizes) - 1:
            raise UsageError("a template needs one activation per layer")
        for name in self.activations:
            if name not in TRAINABLE:
                raise UsageError(
                    f"activation {name!r} cannot be trained; trainable: {', '.join(TRAINABLE)}"
                )

    @classmethod
    def mlp(cls, sizes: tuple[int, ...], hidden: str = "relu") -> Template:
        """Hidden layers with `hidden`, and an identity output (the score, a logit)."""
        return cls(tuple(sizes), (hidden,) * (len(sizes) - 2) + ("identity",))

    @property
    def shapes(self) -> tuple[tuple[int, int], ...]:
        return tuple(zip(self.sizes[:-1], self.sizes[1:], strict=False))

    @property
    def n_params(self) -> int:
        return sum(a * b + b for a, b in self.shapes)

    def unflatten(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Views (W, b) per layer into the flat parameter vector (W row-major, then b)."""
        out, at = [], 0
        for a, b in self.shapes:
            w = theta[at : at + a * b].reshape(a, b)
            at += a * b
            out.append((w, theta[at : at + b]))
            at += b
        return out

    def weight_mask(self) -> np.ndarray:
        """1 where theta holds a weight, 0 where a bias (weight decay spares biases)."""
        mask = np.zeros(self.n_params)
        for w, _ in self.unflatten(mask):
            w[...] = 1.0
        return mask

    def init(self, rng: np.random.Generator) -> np.ndarray:
        """He-scaled normal weights, zero biases."""
        theta = np.zeros(self.n_params)
        for w, _ in self.unflatten(theta):
            w[...] = rng.standard_normal(w.shape) * np.sqrt(2.0 / w.shape[0])
        return theta

    def layers(self, theta: np.ndarray) -> tuple[Dense, ...]:
        return tuple(
            Dense(w.copy(), b.copy(), Activation(act))
            for (w, b), act in zip(self.unflatten(theta), self.activations, strict=False)
        )

    def forward(self, theta: np.ndarray, x: np.ndarray) -> np.ndarray:
        """The score (last layer's single output) of each row of (normalised) `x`."""
        h = x
        for (w, b), act in zip(self.unflatten(theta), self.activations, strict=False):
            h = Activation(act).apply(h @ w + b)
        return h[:, 0]


@dataclass(eq=False)
class Objective:
    """What a search minimises: mean class-balanced logistic loss + weight decay on the training
    set, and the validation error (score > 0 means face) it reports progress with.

    Inputs are already normalised. Labels are 0/1; each class weighs half of the loss.
    """

    template: Template
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    weight_decay: float = 1e-4

    def __post_init__(self) -> None:
        if self.template.sizes[-1] != 1:
            raise UsageError(
                f"the template must end in 1 output (a score), got {self.template.sizes}"
            )
        if self.x_train.shape[1] != self.template.sizes[0]:
            raise UsageError(
                f"the template expects {self.template.sizes[0]} inputs but the data has "
                f"{self.x_train.shape[1]} per example"
            )
        self.sample_weight = _balanced_weights(self.y_train)
        self.sign = 2.0 * self.y_train - 1.0
        self.mask = self.template.weight_mask()

    @property
    def n_train(self) -> int:
        return int(self.y_train.shape[0])

    def loss(self, theta: np.ndarray, idx: np.ndarray | None = None) -> float:
        x, sign, sw = self._batch(idx)
        z = self.template.forward(theta, x)
        return float(np.sum(sw * _softplus(-sign * z)) + self._decay(theta))

    def loss_and_grad(
        self, theta: np.ndarray, idx: np.ndarray | None = None
    ) -> tuple[float, np.ndarray]:
        """The loss on the rows `idx` (all if None) and its gradient, by backpropagation."""
        x, sign, sw = self._batch(idx)
        grad = np.zeros_like(theta)
        params = self.template.unflatten(theta)
        grads = self.template.unflatten(grad)
        acts = [Activation(a) for a in self.template.activations]
        inputs, pre, outs = [], [], []
        h = x
        for (w, b), act in zip(params, acts, strict=False):
            inputs.append(h)
            a = h @ w + b
            h = act.apply(a)
            pre.append(a)
            outs.append(h)
        z = h[:, 0]
        loss = float(np.sum(sw * _softplus(-sign * z)) + self._decay(theta))
        # d/dz softplus(-s z) = -s * sigmoid(-s z)
        delta = (sw * -sign * _sigmoid(-sign * z))[:, None]
        for i in range(len(params) - 1, -1, -1):
            delta = delta * activation_grad(acts[i], pre[i], outs[i])
            gw, gb = grads[i]
            gw[...] = inputs[i].T @ delta
            gb[...] = delta.sum(axis=0)
            if i:
                delta = delta @ params[i][0].T
        grad += self.weight_decay * self.mask * theta
        return loss, grad

    def val_error(self, theta: np.ndarray) -> float:
        z = self.template.forward(theta, self.x_val)
        return float(np.mean((z > 0.0) != (self.y_val == 1)))

    def _batch(self, idx: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if idx is None:
            return self.x_train, self.sign, self.sample_weight
        sw = self.sample_weight[idx]
        return self.x_train[idx], self.sign[idx], sw / sw.sum()

    def _decay(self, theta: np.ndarray) -> float:
        return 0.5 * self.weight_decay * float(np.sum(self.mask * theta * theta))


def _balanced_weights(y: np.ndarray) -> np.ndarray:
    """Per-example weights summing to 1, half on each class present."""
    w = np.zeros(len(y))
    classes = np.unique(y)
    for c in classes:
        sel = y == c
        w[sel] = 1.0 / (len(classes) * sel.sum())
    return w


def _softplus(t: np.ndarray) -> np.ndarray:
    return np.maximum(t, 0.0) + np.log1p(np.exp(-np.abs(t)))


def _sigmoid(t: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(t))
    return np.where(t >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))
