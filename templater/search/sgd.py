"""Mini-batch SGD with Adam: the well-optimised search (gradients by backpropagation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from templater.search import Recorder
    from templater.search.objective import Objective


def run(
    objective: Objective,
    theta: np.ndarray,
    budget: int,
    rng: np.random.Generator,
    recorder: Recorder,
    lr: float = 2e-3,
    batch: int = 64,
    beta1: float = 0.9,
    beta2: float = 0.999,
) -> tuple[np.ndarray, float]:
    """`budget` Adam steps over shuffled mini-batches (one program evaluated per step)."""
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    n = objective.n_train
    batch = int(min(batch, n))
    order = rng.permutation(n)
    at = 0
    loss = float("nan")
    for step in range(1, budget + 1):
        if at + batch > n:  # a new epoch: reshuffle
            order = rng.permutation(n)
            at = 0
        idx = order[at : at + batch]
        at += batch
        loss, grad = objective.loss_and_grad(theta, idx)
        m = beta1 * m + (1.0 - beta1) * grad
        v = beta2 * v + (1.0 - beta2) * grad * grad
        mhat = m / (1.0 - beta1**step)
        vhat = v / (1.0 - beta2**step)
        theta = theta - lr * mhat / (np.sqrt(vhat) + 1e-8)
        recorder.tick(theta, loss)
    return theta, objective.loss(theta)
