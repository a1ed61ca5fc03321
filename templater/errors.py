"""The exception tree: every error templater raises on purpose is a TemplaterError."""

from __future__ import annotations


class TemplaterError(Exception):
    """Base class; the message names the file, the part, what was expected and what was found."""


class MalformedModelError(TemplaterError):
    """The model (file or object) is inconsistent or not what it claims to be."""


class UnsafeInputError(TemplaterError):
    """The input would need unpickling, external data or another unsafe operation to load."""


class UnsupportedError(TemplaterError):
    """Well-formed, but uses something templater does not implement (an op, activation, dtype)."""


class TooLargeError(TemplaterError):
    """Beyond a documented size limit; raised from declared sizes, before allocating."""


class UsageError(TemplaterError):
    """A command or function was called with arguments that cannot work (bad --arch, bad image)."""
