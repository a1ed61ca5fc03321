"""Numba programs' on-disk cache: every loading order works, in fresh processes.

numba's cache records each function's module by name and imports that name to load it again; a
program loaded without being put in sys.modules used to poison its cache for every later load.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import templater
from templater.network import Dense, Head, Network

GENERATED = Path(__file__).resolve().parent.parent / "generated"
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

# Each way of loading prints one line: the program's outputs on fixed rows.
BY_PATH = """
import importlib.util, sys, numpy as np
spec = importlib.util.spec_from_file_location({name!r}, {path!r})
program = importlib.util.module_from_spec(spec)
spec.loader.exec_module(program)  # not put in sys.modules: the usual recipe for a file by path
"""
BY_IMPORT = """
import sys, numpy as np
sys.path.insert(0, {folder!r})
import {stem} as program
"""
BY_TEMPLATER = """
import numpy as np, templater.programs
program = templater.programs.import_program({path!r})
"""
TWO_NAMES = BY_PATH + """
first = program
spec = importlib.util.spec_from_file_location("second_name", {path!r})
program = importlib.util.module_from_spec(spec)
sys.modules["second_name"] = program
spec.loader.exec_module(program)
assert (first.score_batch(np.ones((2, program.N_INPUTS))) ==
        program.score_batch(np.ones((2, program.N_INPUTS)))).all()
"""
PRINT = """
rows = np.random.default_rng(0).random((5, program.N_INPUTS))
print(repr(program.score_batch(rows).round(12).tolist()))
"""


def run(code: str, cwd: Path, env: dict | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code + PRINT],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def small_program(tmp_path: Path, weight: float = 0.5) -> Path:
    net = Network(
        3,
        (Dense(np.full((3, 4), weight), np.zeros(4)), Dense(np.full((4, 1), weight), np.zeros(1))),
        Head("binary", threshold=0.0),
    )
    path = tmp_path / "small_numba.py"
    path.write_text(templater.compile(net, "numba"), encoding="utf-8")
    return path


def program_copy(which: str, tmp_path: Path) -> Path:
    folder = tmp_path / "prog"
    folder.mkdir()
    if which == "fresh":
        source = small_program(tmp_path)
    else:
        source = GENERATED / which / f"{which}_numba.py"
    return Path(shutil.copy(source, folder))


def orders(path: Path):
    folder, stem = str(path.parent), path.stem
    return {
        "by_path_other_name": BY_PATH.format(name="whatever", path=str(path)),
        "by_path_own_name": BY_PATH.format(name=stem, path=str(path)),
        "import": BY_IMPORT.format(folder=folder, stem=stem),
        "templater": BY_TEMPLATER.format(path=str(path)),
        "two_names": TWO_NAMES.format(name="first_name", path=str(path)),
    }


@pytest.mark.parametrize("which", ["digits", "face", "fresh"])
def test_every_loading_order_shares_one_cache(which, tmp_path):
    path = program_copy(which, tmp_path)
    ways = orders(path)
    elsewhere = tmp_path  # not the program's folder: nothing makes its name importable
    sequence = ["by_path_other_name", "import", "templater", "two_names", "by_path_own_name",
                "import"]
    outputs = [run(ways[step], elsewhere) for step in sequence]
    assert len(set(outputs)) == 1, outputs
    assert list((path.parent / "__pycache__").glob("*.nbi"))  # the cache was written and used


def test_corrupt_and_truncated_cache_files_are_recompiled(tmp_path):
    path = program_copy("digits", tmp_path)
    way = orders(path)["import"]
    expected = run(way, tmp_path)
    files = sorted((path.parent / "__pycache__").glob("*.nb*"))
    assert files
    for f in files:
        f.write_bytes(f.read_bytes()[:20])  # truncated
    assert run(way, tmp_path) == expected
    for f in sorted((path.parent / "__pycache__").glob("*.nb*")):
        f.write_bytes(b"garbage\n")  # not numba's at all
    assert run(way, tmp_path) == expected
    assert run(way, tmp_path) == expected


def test_no_writable_cache_folder_compiles_without_a_cache(tmp_path):
    # As root a chmod does not stop writes: a plain file where each cache folder would go does.
    path = program_copy("digits", tmp_path)
    (path.parent / "__pycache__").write_text("not a folder")
    blocker = tmp_path / "blocked"
    blocker.write_text("not a folder")
    env = {"HOME": str(blocker), "XDG_CACHE_HOME": str(blocker), "NUMBA_CACHE_DIR": ""}
    out = run(orders(path)["by_path_other_name"], tmp_path, env)
    assert run(orders(path)["import"], tmp_path, env) == out
    assert (path.parent / "__pycache__").read_text() == "not a folder"


def test_a_regenerated_file_of_the_same_size_and_time_never_loads_old_code(tmp_path):
    # numba's cache index checks the source's size and modification time only.
    folder = tmp_path / "prog"
    folder.mkdir()
    first = small_program(tmp_path, 0.5).read_text()
    second = small_program(tmp_path, 0.7).read_text()
    assert len(first) == len(second) and first != second
    path = folder / "small_numba.py"
    path.write_text(first)
    way = orders(path)["import"]
    out_first = run(way, tmp_path)
    stat = path.stat()
    path.write_text(second)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    out_second = run(way, tmp_path)
    assert out_second != out_first
    path.write_text(second)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    assert run(way, tmp_path) == out_second
