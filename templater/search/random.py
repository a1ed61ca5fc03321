"""Random search: sample whole weight settings around the start, keep the best training loss."""

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
) -> tuple[np.ndarray, float]:
    """The start counts as the first sample; each further sample is a fresh initialisation."""
    best, best_loss = theta, objective.loss(theta)
    recorder.tick(best, best_loss)
    for _ in range(budget - 1):
        candidate = objective.template.init(rng)
        loss = objective.loss(candidate)
        if loss < best_loss:
            best, best_loss = candidate, loss
        recorder.tick(best, best_loss)
    return best, best_loss
