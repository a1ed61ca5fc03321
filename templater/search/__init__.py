"""Training as a search over programs: one interface over sgd, random and hillclimb.

A strategy fills the template's holes (a flat parameter vector `theta`) to minimise an
`Objective`. Each counts one *program evaluated* per weight setting whose loss it computes
(SGD: one per mini-batch step), and records the validation error against that count, so
strategies compare at equal evaluation budgets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from templater.errors import UsageError
from templater.search.objective import Objective, Template

# (programs evaluated, budget, training loss, validation error) at each recorded point.
Progress = Callable[[int, int, float, float], None]


@dataclass(frozen=True, eq=False)
class SearchResult:
    """The chosen parameters and the curve of (programs evaluated, validation error)."""

    strategy: str
    theta: np.ndarray
    curve: tuple[tuple[int, float], ...]
    evaluations: int
    train_loss: float


class Recorder:
    """Counts programs evaluated and records the validation error about 100 times per run."""

    def __init__(
        self, objective: Objective, budget: int, progress: Progress | None, offset: int = 0
    ):
        self.objective = objective
        self.budget = budget
        self.progress = progress
        self.every = max(1, budget // 100)
        self.offset = offset  # evaluations spent before this run (bootstrapping rounds)
        self.count = 0
        self.curve: list[tuple[int, float]] = []

    def tick(self, theta: np.ndarray, loss: float) -> None:
        self.count += 1
        if self.count % self.every == 0 or self.count == self.budget:
            err = self.objective.val_error(theta)
            self.curve.append((self.offset + self.count, err))
            if self.progress is not None:
                self.progress(self.count, self.budget, loss, err)


def search(
    objective: Objective,
    strategy: str,
    budget: int,
    rng: np.random.Generator,
    progress: Progress | None = None,
    theta0: np.ndarray | None = None,
    offset: int = 0,
    **options: float,
) -> SearchResult:
    """Run `strategy` for `budget` programs evaluated, starting from `theta0` (or a fresh init)."""
    from templater.search import hillclimb, random, sgd

    strategies = {"sgd": sgd.run, "random": random.run, "hillclimb": hillclimb.run}
    if strategy not in strategies:
        raise UsageError(f"unknown search {strategy!r}; choose one of: {', '.join(strategies)}")
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise UsageError(f"the evaluation budget must be a positive integer, got {budget!r}")
    if theta0 is None:
        theta0 = objective.template.init(rng)
    recorder = Recorder(objective, int(budget), progress, offset)
    theta, loss = strategies[strategy](
        objective, theta0.copy(), int(budget), rng, recorder, **options
    )
    return SearchResult(strategy, theta, tuple(recorder.curve), recorder.count, loss)


STRATEGIES = ("sgd", "random", "hillclimb")

__all__ = ["STRATEGIES", "Objective", "Progress", "SearchResult", "Template", "search"]
