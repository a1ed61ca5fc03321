"""The search strategies and the objective's backpropagation."""

from __future__ import annotations

import numpy as np
import pytest

from templater.errors import UsageError
from templater.network import Activation
from templater.search import STRATEGIES, search
from templater.search.objective import TRAINABLE, Objective, Template


def _away_from_kinks(template: Template, theta: np.ndarray, x: np.ndarray, eps: float) -> bool:
    """True when no pre-activation lies within `eps` of a kink (derivative jumps there)."""
    h = x
    for (w, b), name in zip(template.unflatten(theta), template.activations, strict=False):
        a = h @ w + b
        act = Activation(name)
        kinks = {"relu": [0.0], "leaky_relu": [0.0], "step": [0.0]}.get(name, [])
        if name == "clip":
            kinks = [act.alpha, act.beta]
        if name == "hard_sigmoid":
            kinks = [-act.beta / act.alpha, (1.0 - act.beta) / act.alpha]
        if any(np.min(np.abs(a - k)) < eps for k in kinks):
            return False
        h = act.apply(a)
    return True


@pytest.mark.parametrize("activation", TRAINABLE)
def test_gradient_matches_finite_differences(activation: str) -> None:
    rng = np.random.default_rng(TRAINABLE.index(activation))
    template = Template((6, 5, 4, 1), (activation, activation, "identity"))
    x = rng.standard_normal((10, 6)) * 2.0
    y = rng.integers(0, 2, 10)
    objective = Objective(template, x, y, x, y, weight_decay=0.05)
    while True:  # resample until every unit is safely away from a kink
        theta = rng.standard_normal(template.n_params)
        if _away_from_kinks(template, theta, x, 1e-3):
            break
    _, grad = objective.loss_and_grad(theta)
    h = 1e-6
    numeric = np.array(
        [
            (objective.loss(theta + e) - objective.loss(theta - e)) / (2 * h)
            for e in np.eye(len(theta)) * h
        ]
    )
    rel = np.linalg.norm(grad - numeric) / (np.linalg.norm(grad) + np.linalg.norm(numeric))
    assert rel < 1e-6


def test_minibatch_gradient_is_the_batch_loss_gradient() -> None:
    rng = np.random.default_rng(0)
    template = Template.mlp((4, 3, 1), "tanh")
    x, y = rng.standard_normal((20, 4)), rng.integers(0, 2, 20)
    objective = Objective(template, x, y, x, y)
    theta = template.init(rng)
    idx = np.array([1, 5, 7, 11])
    loss, grad = objective.loss_and_grad(theta, idx)
    assert loss == pytest.approx(objective.loss(theta, idx), rel=1e-12)
    e = np.zeros_like(theta)
    e[3] = 1e-6
    assert grad[3] == pytest.approx(
        (objective.loss(theta + e, idx) - objective.loss(theta - e, idx)) / 2e-6, rel=1e-5
    )


def _toy(seed: int = 0) -> Objective:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((200, 5))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    return Objective(Template.mlp((5, 4, 1)), x[:150], y[:150], x[150:], y[150:], weight_decay=0.0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_counts_programs_and_records_its_curve(strategy: str) -> None:
    objective = _toy()
    result = search(objective, strategy, 300, np.random.default_rng(1))
    assert result.evaluations == 300
    xs = [n for n, _ in result.curve]
    assert xs == sorted(xs) and xs[-1] == 300 and len(xs) == 100
    assert all(0.0 <= e <= 1.0 for _, e in result.curve)
    # every strategy learns something on a linearly separable toy problem
    assert result.curve[-1][1] < 0.3


def test_random_and_hillclimb_never_get_worse_on_training_loss() -> None:
    objective = _toy()
    start = objective.template.init(np.random.default_rng(2))
    for strategy in ("random", "hillclimb"):
        result = search(objective, strategy, 100, np.random.default_rng(3), theta0=start)
        assert result.train_loss <= objective.loss(start)


def test_same_seed_same_search() -> None:
    objective = _toy()
    a = search(objective, "sgd", 50, np.random.default_rng(9))
    b = search(objective, "sgd", 50, np.random.default_rng(9))
    assert np.array_equal(a.theta, b.theta) and a.curve == b.curve


@pytest.mark.parametrize("budget", [0, -3, 2.5, True])
def test_bad_budget_or_strategy_is_refused(budget: object) -> None:
    with pytest.raises(UsageError, match="budget"):
        search(_toy(), "sgd", budget, np.random.default_rng(0))  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="unknown search"):
        search(_toy(), "annealing", 10, np.random.default_rng(0))


def test_template_refuses_softmax_and_mismatched_inputs() -> None:
    with pytest.raises(UsageError, match="cannot be trained"):
        Template((3, 2, 1), ("softmax", "identity"))
    with pytest.raises(UsageError, match="expects 7 inputs"):
        Objective(
            Template.mlp((7, 2, 1)), np.zeros((4, 5)), np.zeros(4), np.zeros((4, 5)), np.zeros(4)
        )
