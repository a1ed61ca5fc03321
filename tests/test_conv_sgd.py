"""Backpropagation of the conv search against finite differences, and its forward pass against
ConvNetwork.forward once frozen."""

import numpy as np

from templater.search import conv_sgd

STACK = conv_sgd.ConvStack(channels=(3, 4), kernels=(3, 3), pools=(True, False), head_kernel=2)


def _problem(seed=0):
    rng = np.random.default_rng(seed)
    params = conv_sgd.init_params(STACK, rng)
    params = [p + rng.normal(0.0, 0.1, p.shape) for p in params]  # slopes and biases off zero
    side = STACK.receptive_field()
    x = rng.normal(0.0, 1.0, (5, 1, side, side))
    y = (rng.random(5) < 0.5).astype(float)
    weight = rng.uniform(0.5, 2.0, 5)
    return params, x, y, weight


def test_receptive_field_gives_one_score():
    params, x, _, _ = _problem()
    out, _ = conv_sgd.forward(STACK, params, x)
    assert out.shape == (5, 1, 1, 1)


def test_gradients_match_finite_differences():
    params, x, y, weight = _problem()
    decay = 1e-2
    _, grads = conv_sgd.loss_and_grads(STACK, params, x, y, weight, decay)
    rng = np.random.default_rng(1)
    eps = 1e-6
    for i, p in enumerate(params):
        for flat in rng.choice(p.size, size=min(p.size, 6), replace=False):
            idx = np.unravel_index(flat, p.shape)
            old = p[idx]
            p[idx] = old + eps
            up, _ = conv_sgd.loss_and_grads(STACK, params, x, y, weight, decay)
            p[idx] = old - eps
            down, _ = conv_sgd.loss_and_grads(STACK, params, x, y, weight, decay)
            p[idx] = old
            numeric = (up - down) / (2 * eps)
            assert abs(numeric - grads[i][idx]) <= 1e-6 + 1e-4 * abs(numeric), (i, idx)


def test_pool_gradient_goes_to_the_first_maximum():
    x = np.array([[[[1.0, 3.0], [3.0, 0.0]]]])
    out, arg = conv_sgd.pool_forward(x)
    assert out[0, 0, 0, 0] == 3.0
    dx = conv_sgd.pool_backward(np.ones((1, 1, 1, 1)), arg, x.shape)
    assert dx.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]


def test_adam_lowers_the_loss():
    params, x, y, weight = _problem(2)
    before, _ = conv_sgd.loss_and_grads(STACK, params, x, y, weight)
    trained = conv_sgd.adam(
        STACK, params, lambda rng: (x, y, weight), 200, np.random.default_rng(0), lr=1e-2, decay=0.0
    )
    after, _ = conv_sgd.loss_and_grads(STACK, trained, x, y, weight)
    assert after < 0.5 * before


def test_adam_average_last_is_the_mean_of_the_last_weights(monkeypatch):
    # With a constant gradient g, Adam's bias-corrected step is rate_t * g / (|g| + 1e-8), so the
    # weights after every step are known in closed form.
    params, x, y, weight = _problem(2)
    params = [p.astype(np.float64) for p in params]
    monkeypatch.setattr(
        conv_sgd, "loss_and_grads", lambda stack, ps, *a, **k: (0.0, [np.ones_like(p) for p in ps])
    )
    steps, lr, n = 10, 1e-2, 4
    rates = lr * (1.0 - 0.9 * np.arange(steps) / (steps - 1))
    moved = np.cumsum(rates) * (1.0 / (1.0 + 1e-8))  # how far every weight fell after each step

    def run(average_last):
        return conv_sgd.adam(
            STACK, params, lambda rng: (x, y, weight), steps, np.random.default_rng(0), lr=lr,
            decay=0.0, average_last=average_last,
        )

    for p0, last, mean in zip(params, run(0), run(n), strict=True):
        np.testing.assert_allclose(last, p0 - moved[-1], rtol=0, atol=1e-12)
        np.testing.assert_allclose(mean, p0 - moved[-n:].mean(), rtol=0, atol=1e-12)
        assert mean.dtype == p0.dtype
