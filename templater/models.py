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
    if path.suffix.lower() == ".npz":
        from templater import own_detector

        if own_detector.is_model_file(path):
            return own_detector.load(path).network()
    return load_any(path)
