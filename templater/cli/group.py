"""The command group: a thin click layer that parses arguments and calls the Python API."""

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


# The commands live in templater.cli's modules, one per job; each only parses and calls the API.
