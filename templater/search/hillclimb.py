"""Hill climbing: perturb the current weights, keep the change if the training loss drops."""

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
    sigma: float = 0.02,
) -> tuple[np.ndarray, float]:
    """Gaussian steps with an adaptive size: grown after a success, shrunk after a failure
    (roughly the 1/5 success rule, which keeps the step near the useful scale)."""
    best_loss = objective.loss(theta)
    recorder.tick(theta, best_loss)
    for _ in range(budget - 1):
        candidate = theta + sigma * rng.standard_normal(theta.shape)
        loss = objective.loss(candidate)
        if loss < best_loss:
            theta, best_loss = candidate, loss
            sigma *= 1.5
        else:
            sigma *= 0.9
        sigma = min(max(sigma, 1e-6), 1.0)
        recorder.tick(theta, best_loss)
    return theta, best_loss
