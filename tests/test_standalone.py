"""Standalone: emitted programs run without templater (and the Python one without numpy)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import templater

GENERATED = Path(__file__).resolve().parent.parent / "generated"

# Run in an isolated interpreter (-I: no user site, no cwd on sys.path) with the named
# packages made unimportable.
RUNNER = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None
sys.path.insert(0, ".")
import {module} as program
rows = json.load(open("rows.json"))
{body}
"""


def run_isolated(folder: Path, module: str, blocked: list[str], body: str) -> str:
    code = RUNNER.format(blocked=blocked, module=module, body=body)
    done = subprocess.run(
        [sys.executable, "-I", "-c", code], cwd=folder, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_python_program_runs_with_neither_templater_nor_numpy(tmp_path):
    shutil.copy(GENERATED / "digits" / "digits_python.py", tmp_path)
    net = templater.load(GENERATED / "digits" / "model.npz")
    x = np.random.default_rng(0).random((5, 64))
    (tmp_path / "rows.json").write_text(json.dumps(x.tolist()))
    out = run_isolated(
        tmp_path,
        "digits_python",
        ["numpy", "templater", "numba"],
        "print(json.dumps([program.scores(r) for r in rows]))",
    )
    got = np.array(json.loads(out))
    np.testing.assert_allclose(got, net.forward(x), rtol=1e-12, atol=1e-15)


@pytest.mark.slow
def test_numba_program_runs_without_templater(tmp_path):
    shutil.copy(GENERATED / "digits" / "digits_numba.py", tmp_path)
    net = templater.load(GENERATED / "digits" / "model.npz")
    x = np.random.default_rng(1).random((5, 64))
    (tmp_path / "rows.json").write_text(json.dumps(x.tolist()))
    out = run_isolated(
        tmp_path,
        "digits_numba",
        ["templater"],
        "import numpy as np\n"
        "print(json.dumps(program.score_batch(np.array(rows)).tolist()))\n"
        "print(json.dumps([program.predict(np.array(r)) for r in rows]))",
    )
    scores, predicted = (json.loads(line) for line in out.splitlines())
    np.testing.assert_allclose(np.array(scores), net.forward(x), rtol=1e-12, atol=1e-15)
    assert predicted == list(net.predict(x))


@pytest.mark.slow
def test_numba_cache_serves_templater_and_a_plain_import_alike(tmp_path):
    # numba's on-disk cache records the module name a function was compiled under and imports
    # it when loading; templater.import_program must use the name a user's import gives, or
    # whichever comes second fails with ModuleNotFoundError.
    shutil.copy(GENERATED / "digits" / "digits_numba.py", tmp_path)
    x = np.random.default_rng(2).random((5, 64))
    (tmp_path / "rows.json").write_text(json.dumps(x.tolist()))
    by_templater = (
        "import json, numpy as np, templater\n"
        "program = templater.import_program('digits_numba.py')\n"
        "rows = np.array(json.load(open('rows.json')))\n"
        "print(json.dumps(program.score_batch(rows).tolist()))\n"
    )
    body = "import numpy as np\nprint(json.dumps(program.score_batch(np.array(rows)).tolist()))"
    outputs = []
    for step in ("templater", "plain", "templater"):
        if step == "plain":
            outputs.append(run_isolated(tmp_path, "digits_numba", [], body))
            continue
        done = subprocess.run(
            [sys.executable, "-c", by_templater], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert list((tmp_path / "__pycache__").glob("digits_numba.*.nbi"))  # the cache was used
    assert outputs[0] == outputs[1] == outputs[2]
