"""The examples run as a user would run them, so they cannot rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import templater

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.slow
def test_digits_example_compiles_a_classifier_that_matches_scikit_learn(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "digits.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 2 and all("predictions equal to predict(): True" in ln for ln in lines)
    net = templater.load(tmp_path / "model.npz")
    assert net.architecture == "64-16-10" and net.head.kind == "multiclass"
    assert net.head.labels == tuple(range(10))
    # The example writes both programs; the pure-Python one is the readable reference.
    python_program = templater.import_program(tmp_path / "digits_python.py")
    x = np.random.default_rng(0).random(64)
    assert python_program.predict(x.tolist()) == net.predict(x)
