"""Shared pytest fixtures (append only: several features add theirs here)."""

from __future__ import annotations

import pytest


# -- training --------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def default_training():
    """One real training run with the default configuration, shared by every test that needs it."""
    import time

    from templater.train import TrainConfig, train

    start = time.perf_counter()
    result = train(TrainConfig())
    return result, time.perf_counter() - start


# -- compiling programs ----------------------------------------------------------------------------
@pytest.fixture(scope="session")
def program_dir(tmp_path_factory):
    """One folder for compiled programs; numba's cache lands beside them."""
    return tmp_path_factory.mktemp("programs")


@pytest.fixture(scope="session")
def build_program(program_dir):
    """build_program(net, target, layout) -> the imported module, cached per network and options."""
    from templater import compile as compile_network
    from templater import import_program

    cache = {}

    def build(net, target="python", layout="auto"):
        key = (net.digest(), target, layout)
        if key not in cache:
            path = program_dir / f"p_{key[0]}_{target}_{layout}.py"
            path.write_text(compile_network(net, target, layout), encoding="utf-8")
            cache[key] = import_program(path)
        return cache[key]

    return build


# -- finding faces ---------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def scan_net():
    """A random 625-8-1 face-shaped network (window normalisation, 25x25): cheap to compile."""
    import numpy as np

    from templater.network import Dense, Head, Network, Normalization

    rng = np.random.default_rng(4)
    return Network(
        625,
        (
            Dense(rng.normal(0, 0.05, (625, 8)), rng.normal(0, 0.1, 8), "relu"),
            Dense(rng.normal(0, 1.0, (8, 1)), np.zeros(1)),
        ),
        head=Head("binary", 0.25),
        normalization=Normalization("window"),
        input_shape=(25, 25),
        name="random scanner test net",
    )


@pytest.fixture(scope="session")
def committed_face():
    """(the committed face model, its committed Numba program imported once)."""
    from templater import import_program, load
    from templater.golden import default_root

    root = default_root() / "face"
    return load(root / "model.npz"), import_program(root / "face_numba.py")
