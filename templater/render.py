"""Rendering: the Jinja2 environment; templates own the file skeleton, the emitter the body."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("templater", "templates"),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, not an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def render(template: str, context: dict[str, Any]) -> str:
    return environment().get_template(template).render(**context)


# What a numba template's PROGRAM_KEY holds until the text around it is known.
KEY_PENDING = "pending"


def with_program_key(text: str) -> str:
    """`text` with its PROGRAM_KEY line (numba) set to a digest of the rest of the text."""
    import hashlib

    line = f"\nPROGRAM_KEY = {KEY_PENDING!r}\n"  # a repr() of model text holds no newline
    if line not in text:
        return text
    key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return text.replace(line, f"\nPROGRAM_KEY = {key!r}\n", 1)
