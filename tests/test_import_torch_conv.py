"""from_torch_conv: PyTorch conv modules -> ConvNetwork, equal to torch's own forward pass."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from templater.conv_compiler import compile_conv  # noqa: E402
from templater.errors import UnsupportedError  # noqa: E402
from templater.importers.torch_conv import from_torch_conv  # noqa: E402


def _model():
    torch.manual_seed(0)
    trunk = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=1, padding=1),
        nn.BatchNorm2d(6),
        nn.PReLU(6),
        nn.MaxPool2d(2, 2, ceil_mode=True),
        nn.Conv2d(6, 6, 3, groups=6, padding=(1, 0)),
        nn.ReLU(),
        nn.AvgPool2d(2, 1, padding=1, count_include_pad=False),
    )
    heads = {
        "map": nn.Sequential(nn.Conv2d(6, 2, 1), nn.Softmax(dim=1)),
        "vector": nn.Sequential(nn.Flatten(), nn.Linear(6 * 7 * 5, 4), nn.Tanh()),
    }
    for m in trunk.modules():  # non-trivial running statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    trunk.eval()
    return trunk.double(), {k: v.double().eval() for k, v in heads.items()}


def test_matches_torch_and_compiles(tmp_path):
    from templater import import_program

    trunk, heads = _model()
    net = from_torch_conv(trunk, heads, size=(11, 11))
    x = np.random.default_rng(0).normal(size=(2, 3, 11, 11))
    with torch.no_grad():
        t = trunk(torch.from_numpy(x))
        expected = {k: h(t).numpy() for k, h in heads.items()}
    got = net.forward(x)
    for key, value in expected.items():
        assert np.allclose(got[key], value, rtol=1e-9, atol=1e-12), key
    path = tmp_path / "torch_conv.py"
    path.write_text(compile_conv(net, "python"), encoding="utf-8")
    program = import_program(path)
    out = program.forward(x[0])
    assert np.allclose(np.asarray(out["vector"]), expected["vector"][0], rtol=1e-9, atol=1e-12)


def test_unsupported_modules_are_refused_by_name():
    with pytest.raises(UnsupportedError, match=r"Conv3d"):
        from_torch_conv(nn.Sequential(nn.Conv3d(1, 1, 3)))
    with pytest.raises(UnsupportedError, match="dilation"):
        from_torch_conv(nn.Sequential(nn.Conv2d(1, 1, 3, dilation=2)))


def test_templater_from_torch_dispatches_to_the_conv_importer():
    import templater
    from templater.convnet import ConvNetwork

    trunk, heads = _model()
    assert isinstance(templater.from_torch(trunk, heads=heads, size=(11, 11)), ConvNetwork)
    assert isinstance(templater.from_torch(nn.Sequential(nn.Conv2d(1, 2, 3))), ConvNetwork)
