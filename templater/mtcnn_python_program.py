"""The compiled MTCNN detector in pure Python: PNet, RNet and ONet as the Python target emits
them plus templater/mtcnn_cascade_pure.py, in one standalone file that imports only math.

With Python floats (float64) throughout, it computes templater's numpy reference cascade
(templater.mtcnn.detect) with float64 reference nets (`ReferenceNets(np.float64)`)."""

from __future__ import annotations

import hashlib
from importlib import resources

from templater.conv_compiler import net_block
from templater.conv_kernels import conv_target
from templater.convfile import convnet_digest
from templater.convnet import ConvNetwork
from templater.errors import UsageError
from templater.mtcnn_files import NETS
from templater.mtcnn_program import PROVENANCE, load_nets

# The heads each net must have, in the order the program's adapters read them.
HEADS = {
    "pnet": ("conv2d_4", "softmax"),
    "rnet": ("dense_2", "softmax_1"),
    "onet": ("dense_5", "dense_6", "softmax_2"),
}
# As templater.compiler's limit for the python target, per net (ONet has 389,000).
MAX_NET_PARAMETERS = 400_000


def cascade_source() -> str:
    """templater/mtcnn_cascade_pure.py without its docstring and import (the program has both)."""
    text = resources.files("templater").joinpath("mtcnn_cascade_pure.py").read_text(
        encoding="utf-8"
    )
    body = text.split('"""', 2)[2]  # after the module docstring
    lines = [line for line in body.splitlines() if line != "import math"]
    return "\n".join(lines).strip("\n")


def compile_mtcnn_python(nets: dict[str, ConvNetwork] | None = None, layout: str = "auto") -> str:
    """The source of the pure-Python MTCNN detector program."""
    from templater.render import render

    nets = nets or load_nets()
    for name in NETS:
        heads = tuple(h for h, _ in nets[name].heads)
        if heads != HEADS[name]:
            raise UsageError(f"{name}: expected heads {HEADS[name]}, got {heads!r}")
        if nets[name].n_parameters > MAX_NET_PARAMETERS:
            raise UsageError(
                f"{name} has {nets[name].n_parameters:,} parameters, more than the python "
                f"target's {MAX_NET_PARAMETERS:,}"
            )
    target = conv_target("python", "float64")
    blocks = []
    for name in NETS:
        block = net_block(nets[name], target, layout, prefix=f"{name}_")
        block["head_names"] = repr(HEADS[name])
        blocks.append((name, block))
    digests = {name: convnet_digest(nets[name]) for name in NETS}
    cascade = cascade_source()
    digest = hashlib.sha256(
        (repr(sorted(digests.items())) + cascade + "python" + layout).encode()
    ).hexdigest()[:16]
    context = {
        "digest": digest,
        "digest_repr": repr(digest),
        "net_digests_repr": repr(digests),
        "dtype_repr": repr("float64"),
        "heads_repr": repr(HEADS),
        "blocks": blocks,
        "tables": [t for _, block in blocks for t in block["tables"]],
        "cascade": cascade,
        "provenance": PROVENANCE,
    }
    return render("mtcnn_python.py.j2", context)
