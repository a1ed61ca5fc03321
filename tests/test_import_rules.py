"""The import rules (.importlinter) hold, and breaking one makes `lint-imports` fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LINT = shutil.which("lint-imports")

pytestmark = pytest.mark.skipif(LINT is None, reason="import-linter is not installed")


def _lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
         "lint_imports_command()", "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, check=False, timeout=300,
    )


def _copy(tmp_path: Path) -> Path:
    root = tmp_path / "copy"
    shutil.copytree(ROOT / "templater", root / "templater",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", root / ".importlinter")
    return root


def test_the_package_keeps_every_rule():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "rule"),
    [
        ("compiler.py", "from templater import scan", "does not import the scanner"),
        ("verify/inputs.py", "from templater import train", "does not import the trainer"),
        ("bench/run.py", "import templater.demo", "does not import the demo"),
        ("lower.py", "from templater import compiler", "a stage imports only the stages below"),
    ],
)
def test_a_forbidden_import_in_a_copy_breaks_the_rules(tmp_path, module, line, rule):
    root = _copy(tmp_path)
    path = root / "templater" / module
    text = path.read_text(encoding="utf-8")
    head, sep, rest = text.partition("from __future__ import annotations\n")
    path.write_text(head + sep + line + "  # noqa\n" + rest, encoding="utf-8")
    done = _lint(root)
    assert done.returncode != 0
    _, _, broken = done.stdout.partition("Broken contracts")
    assert rule in " ".join(broken.split()), done.stdout  # names may wrap across lines
