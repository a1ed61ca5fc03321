"""The command line: `main` is the click group; each module adds one job's commands."""

from __future__ import annotations

from templater.cli import compiling, faces, measuring, review, training  # noqa: F401  (registers)
from templater.cli.group import main

__all__ = ["main"]
