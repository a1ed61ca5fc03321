"""Inputs: the rows a program is run on (the face test split, random rows, or a .npy file)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from templater.errors import (
    MalformedModelError,
    TemplaterError,
    TooLargeError,
    UnsafeInputError,
    UsageError,
)

# Random inputs: the range of the face windows' pixels.
RANDOM_RANGE = (0.0, 1.0)
RANDOM_COUNT = 1000
MAX_DATA_ROWS = 10_000_000
FACE_WIDTH = 625
# Data specs besides a .npy path.
DATA_SPECS = ("auto", "faces", "random")

@dataclass(frozen=True, eq=False)
class Inputs:
    """Rows to run (float64, n x width) and a description of where they came from."""

    x: np.ndarray
    source: str
    images: bool  # rows are face windows (25x25 pixels in [0, 1])


@cache
def face_test_split() -> np.ndarray:
    """The windows of the default training run's held-out test split (read-only)."""
    from templater.data.splits import default_test_split

    test = default_test_split()
    out = np.array(test.x, dtype=np.float64)
    out.setflags(write=False)
    return out


def load_inputs(
    spec: str | os.PathLike | None, n_inputs: int, count: int = RANDOM_COUNT, seed: int = 0
) -> Inputs:
    """`faces` (the face test split), `random` (uniform in RANDOM_RANGE), a .npy file of rows,
    or `auto`/None: the faces when the model takes 625 inputs, else random."""
    spec = "auto" if spec is None else spec
    if spec == "auto":
        spec = "faces" if n_inputs == FACE_WIDTH else "random"
    if spec == "faces":
        if n_inputs != FACE_WIDTH:
            raise UsageError(
                f"the face test split has rows of {FACE_WIDTH} pixels but the model takes "
                f"{n_inputs} inputs; give --data FILE.npy or --data random"
            )
        x = face_test_split()
        return Inputs(x, f"the face test split ({len(x)} windows)", True)
    if spec == "random":
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"random inputs: need a positive count, not {count!r}")
        rng = np.random.default_rng(seed)
        low, high = RANDOM_RANGE
        x = rng.uniform(low, high, size=(count, n_inputs))
        source = f"{count} random inputs uniform in [{low:g}, {high:g}] (seed {seed})"
        return Inputs(x, source, False)
    return Inputs(load_npy(spec, n_inputs), f"{spec}", False)


def load_npy(path: str | os.PathLike, n_inputs: int) -> np.ndarray:
    """Rows from a .npy file: never unpickled, sizes checked from the header before reading."""
    path = Path(path)
    if path.suffix != ".npy":
        raise UsageError(
            f"{path}: expected a .npy file of rows (or one of: {', '.join(DATA_SPECS)})"
        )
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0
                if version == (1, 0)
                else np.lib.format.read_array_header_2_0
            )
            shape, _, dtype = read_header(handle)
    except OSError as exc:
        raise TemplaterError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except (ValueError, EOFError) as exc:
        raise MalformedModelError(f"{path}: file is truncated or not a .npy file ({exc})") from exc
    if dtype.hasobject:
        raise UnsafeInputError(
            f"{path}: holds Python objects (a pickle); templater never unpickles"
        )
    if dtype.kind not in "fiu":
        raise UsageError(f"{path}: expected numbers (float or int), found dtype {dtype}")
    if len(shape) not in (1, 2):
        raise UsageError(f"{path}: expected a 2-D array of rows, found shape {shape}")
    rows = shape[0] if len(shape) == 2 else 1
    width = shape[-1]
    if width != n_inputs:
        raise UsageError(
            f"{path}: expected rows of {n_inputs} numbers (the model's inputs), "
            f"found shape {shape}"
        )
    if rows > MAX_DATA_ROWS:
        raise TooLargeError(f"{path}: {rows:,} rows; the limit is {MAX_DATA_ROWS:,}")
    if rows == 0:
        raise UsageError(f"{path}: holds no rows (shape {shape})")
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise MalformedModelError(f"{path}: file is truncated or not a .npy file ({exc})") from exc
    x = np.atleast_2d(np.asarray(arr, dtype=np.float64))
    bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
    if bad.size:
        raise UsageError(
            f"{path}: {bad.size} row(s) hold NaN or infinity, first row {int(bad[0])}; "
            "programs take finite inputs"
        )
    return x
