"""Loading models: the one function every command uses to read a model file by its suffix."""

from __future__ import annotations

import os
from pathlib import Path

from templater.errors import UsageError
from templater.network import Network

MODEL_SUFFIXES = (".npz", ".onnx")


def load_model(path: str | os.PathLike) -> Network:
    """A model file by suffix (.npz: templater's own format, or the own face detector's file,
    read as its one ConvNetwork; .onnx: imported); anything else, a program included, is refused
    with a message that says what was expected."""
    from templater.importers import load_any

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    if path.suffix.lower() == ".py":
        raise UsageError(f"{path}: a program, where a model file (.npz, .onnx) is needed")
    if path.suffix.lower() not in MODEL_SUFFIXES:
        raise UsageError(
            f"{path}: neither a model file (.npz, .onnx) nor a generated program (.py); "
            f"found suffix {path.suffix!r}"
        )
    if path.suffix.lower() == ".npz" and _is_own_detector(path):
        from templater.own_detector import load as load_own_detector

        return load_own_detector(path).network()
    return load_any(path)


def _is_own_detector(path: Path) -> bool:
    """Whether an .npz is the own detector's file (templater.own_detector.save: a JSON text
    header; templater's model files hold theirs as bytes). Anything unreadable: False, and
    load_any says what is wrong with it."""
    import zipfile

    import numpy as np

    try:
        with zipfile.ZipFile(path) as archive, archive.open("header.npy") as member:
            return np.load(member, allow_pickle=False).dtype.kind == "U"
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, EOFError):
        return False
