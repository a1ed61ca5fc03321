"""Fuzzing: crash inputs found by the campaigns are replayed here; each harness runs briefly.

The campaigns themselves (100,000 inputs for the model loader and the program reader, 10,000
for ONNX and images) run from `python -m templater.fuzz NAME --runs N`; docs/reliability.md
has their results.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from templater.fuzz import HARNESSES

ROOT = Path(__file__).resolve().parent.parent
CORPUS = Path(__file__).resolve().parent / "fuzz_corpus"
CRASHES = sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name != "README.md")


@pytest.mark.parametrize("path", CRASHES, ids=[f"{p.parent.name}/{p.name}" for p in CRASHES])
def test_crash_input_gets_our_own_error(path, tmp_path):
    harness = HARNESSES[path.parent.name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(harness.expected):  # each crash input is refused, in our words
            harness.run(path.read_bytes(), tmp_path)
    assert set(os.listdir(tmp_path)) <= {"model.npz", "model.onnx", "program.py"}


def test_every_harness_has_seeds():
    for harness in HARNESSES.values():
        assert harness.seeds(), harness.name


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(HARNESSES))
def test_harness_runs_clean(name, tmp_path):
    runs = 400
    done = subprocess.run(
        [sys.executable, "-m", "templater.fuzz", name, "--runs", str(runs), "--instrument",
         "templater", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"Done {runs} runs" in done.stderr
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
