"""The command line: a thin click layer that parses arguments and calls the Python API."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from templater.errors import TemplaterError


class _Group(click.Group):
    """Turns TemplaterError into a one-line message and exit status 2.

    TEMPLATER_DEBUG=1 shows the traceback instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TemplaterError as exc:
            if os.environ.get("TEMPLATER_DEBUG"):
                raise
            click.echo(f"templater: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="templater")
def main() -> None:
    """Compile trained networks into literal Python and Numba programs."""


# Commands are added below, one section per feature; each only parses and calls the API.


# -- compile and regenerate (issue 2) ---------------------------------------------------------
@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--target", type=click.Choice(["python", "numba"]), default="python", show_default=True
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "unrolled", "table"]),
    default="auto",
    show_default=True,
    help="unrolled: literal statements; table: literal weight rows plus loops; auto: per layer.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write here (default: stdout)."
)
def compile_command(model: str, target: str, layout: str, output: str | None) -> None:
    """Compile MODEL (.npz or .onnx) into a program."""
    from templater.compiler import compile as compile_network
    from templater.fileio import write_atomic
    from templater.importers import load_any

    source = compile_network(load_any(model), target, layout)
    if output:
        write_atomic(output, source)
        click.echo(f"wrote {output} ({source.count(chr(10)):,} lines)", err=True)
    else:
        click.echo(source, nl=False)


@main.command("regenerate")
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 with a diff if anything differs."
)
@click.option("--root", type=click.Path(file_okay=False), help="The generated/ folder.")
def regenerate_command(check: bool, root: str | None) -> None:
    """Re-render every program under generated/ from the model file committed beside it."""
    from pathlib import Path

    from templater.golden import regenerate

    outcomes = regenerate(Path(root) if root else None, check=check)
    changed = [o for o in outcomes if o.changed]
    for o in outcomes:
        state = ("differs" if check else "rewritten") if o.changed else "up to date"
        click.echo(f"{o.entry.output}: {state}")
    if check and changed:
        for o in changed:
            click.echo(o.diff, nl=False)
        click.echo(f"{len(changed)} program(s) out of date; run: templater regenerate", err=True)
        sys.exit(1)
