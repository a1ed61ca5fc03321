"""from_torch: in-memory nn.Sequential models compiled into programs that match module(x)."""

from __future__ import annotations

import numpy as np
import pytest
from importer_support import TARGETS, decisions, load_program, outputs

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from templater.errors import MalformedModelError, UnsupportedError  # noqa: E402
from templater.importers.torch import from_torch  # noqa: E402

TOL = 1e-5  # torch computes in float32


def _trained_like(module: nn.Module, seed: int) -> nn.Module:
    """Random weights, and BatchNorm statistics that are not the identity."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-1.0, 1.0)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return module.eval()


def _inputs(n: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, width)).astype(np.float32)


def _reference(module: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return module(torch.from_numpy(x)).double().numpy()


MODELS = {
    "every-module": lambda: nn.Sequential(
        nn.Flatten(),
        nn.Linear(12, 16),
        nn.BatchNorm1d(16),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Sequential(nn.Linear(16, 8), nn.LeakyReLU(0.05), nn.Identity()),
        nn.Linear(8, 6),
        nn.Tanh(),
        nn.Linear(6, 5),
        nn.Hardsigmoid(),
        nn.Linear(5, 1),
        nn.Sigmoid(),
    ),
    "multiclass": lambda: nn.Sequential(nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 4)),
    "batchnorm-first": lambda: nn.Sequential(
        nn.BatchNorm1d(12), nn.Linear(12, 3, bias=False), nn.Sigmoid(), nn.Linear(3, 1)
    ),
}


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("target", TARGETS)
def test_program_matches_module(tmp_path, target, name):
    module = _trained_like(MODELS[name](), seed=len(name))
    net = from_torch(module)
    x = _inputs(1000, 12)
    expected = _reference(module, x)
    assert np.abs(net.forward(x) - expected).max() <= TOL
    program = load_program(net, target, tmp_path)
    got = outputs(program, net, target, x)
    assert np.abs(got - expected).max() <= TOL
    if net.head.kind == "binary":
        threshold = 0.5 if name == "every-module" else 0.0
        assert net.head.threshold == threshold
        expected_decisions = expected[:, 0] > threshold
    else:
        expected_decisions = expected.argmax(axis=1)
    assert np.array_equal(decisions(program, net, target, x), expected_decisions)


def test_batchnorm_is_folded_into_the_preceding_linear():
    module = _trained_like(MODELS["every-module"](), seed=1)
    net = from_torch(module)
    assert net.architecture == "12-16-8-6-5-1"
    assert [layer.activation.name for layer in net.layers] == [
        "relu", "leaky_relu", "tanh", "hard_sigmoid", "sigmoid",
    ]
    assert net.layers[1].activation.alpha == pytest.approx(0.05)
    assert net.layers[3].activation.alpha == 1.0 / 6.0


def test_unsupported_modules_are_all_listed():
    module = nn.Sequential(
        nn.Linear(4, 4), nn.GELU(), nn.Sequential(nn.Conv1d(1, 1, 1)), nn.Linear(4, 1)
    )
    with pytest.raises(UnsupportedError) as info:
        from_torch(module)
    message = str(info.value)
    assert "1 (GELU)" in message and "2.0 (Conv1d)" in message
    assert "Linear" in message  # the supported list


def test_subclass_overriding_forward_is_refused():
    class Sneaky(nn.ReLU):
        def forward(self, x):
            return x * 2

    with pytest.raises(UnsupportedError, match="Sneaky"):
        from_torch(nn.Sequential(nn.Linear(2, 2), Sneaky()))


def test_non_sequential_and_empty_are_refused():
    with pytest.raises(UnsupportedError, match=r"nn\.Sequential"):
        from_torch(nn.Linear(2, 1))
    with pytest.raises(MalformedModelError, match="no layers"):
        from_torch(nn.Sequential())


def test_non_finite_weights_are_refused():
    module = nn.Sequential(nn.Linear(3, 2))
    with torch.no_grad():
        module[0].weight[1, 2] = float("nan")
    with pytest.raises(MalformedModelError, match="non-finite"):
        from_torch(module)


def test_half_precision_is_refused():
    with pytest.raises(UnsupportedError, match="float16"):
        from_torch(nn.Sequential(nn.Linear(3, 1)).half())
