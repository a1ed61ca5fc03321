"""Golden programs: generated/ re-renders byte for byte, in any process, and drift is caught."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import templater
from templater.cli import main
from templater.golden import default_root, read_manifest

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "generated"


def test_generated_programs_are_up_to_date():
    assert default_root() == GENERATED
    result = CliRunner().invoke(main, ["regenerate", "--check"])
    assert result.exit_code == 0, result.output
    entries = read_manifest(GENERATED)
    assert {e.target for e in entries} == {"python", "numba"}
    for entry in entries:
        model = GENERATED / entry.model
        models = (
            [model / f"{n}.npz" for n in ("pnet", "rnet", "onet")]
            if entry.kind == "mtcnn"
            else [model]
        )
        assert (GENERATED / entry.output).is_file() and all(m.is_file() for m in models)


@pytest.mark.slow
def test_rendering_is_identical_across_hash_seeds():
    script = (
        "import sys, templater; "
        "net = templater.load(sys.argv[1]); "
        "sys.stdout.write(templater.compile(net, sys.argv[2]))"
    )
    model = GENERATED / "digits" / "model.npz"
    for target in ("python", "numba"):
        outputs = set()
        for seed in ("0", "1", "12345"):
            env = {**os.environ, "PYTHONHASHSEED": seed}
            out = subprocess.run(
                [sys.executable, "-c", script, str(model), target],
                env=env,
                capture_output=True,
                check=True,
            ).stdout
            outputs.add(out)
        assert len(outputs) == 1
        assert outputs.pop().decode() == (GENERATED / "digits" / f"digits_{target}.py").read_text()


def test_check_reports_a_hand_edit_as_a_diff_and_regenerate_repairs_it(tmp_path):
    root = tmp_path / "generated"
    shutil.copytree(GENERATED, root, ignore=shutil.ignore_patterns("__pycache__"))
    program = root / "digits" / "digits_python.py"
    original = program.read_text()
    net = templater.load(root / "digits" / "model.npz")
    literal = repr(float(net.layers[1].bias[3]))
    assert original.count(literal) == 1
    program.write_text(original.replace(literal, "0.125"))

    result = CliRunner().invoke(main, ["regenerate", "--check", "--root", str(root)])
    assert result.exit_code == 1
    assert "-    0.125" in result.output or "-        0.125" in result.output
    assert f"+        {literal}" in result.output or f"+    {literal}" in result.output
    assert "run: templater regenerate" in result.output
    assert program.read_text() != original  # --check writes nothing

    result = CliRunner().invoke(main, ["regenerate", "--root", str(root)])
    assert result.exit_code == 0 and "rewritten" in result.output
    assert program.read_text() == original


def test_compile_command_writes_stdout_or_a_file(tmp_path):
    model = GENERATED / "digits" / "model.npz"
    result = CliRunner().invoke(main, ["compile", str(model), "--target", "python"])
    assert result.exit_code == 0
    assert result.output == (GENERATED / "digits" / "digits_python.py").read_text()
    out = tmp_path / "prog.py"
    result = CliRunner().invoke(
        main, ["compile", str(model), "--target", "numba", "--layout", "table", "-o", str(out)]
    )
    assert result.exit_code == 0
    assert "Layer layouts: table, table." in out.read_text()
    result = CliRunner().invoke(main, ["compile", str(model), "--target", "cobol"])
    assert result.exit_code == 2 and "cobol" in result.output
