"""Identity of a ConvNetwork: the digest of its structure and weights (name, metadata left out)."""

from __future__ import annotations

import hashlib
import json

from templater.conv_compiler import describe_layer
from templater.convnet import ConvNetwork


def convnet_digest(net: ConvNetwork) -> str:
    h = hashlib.sha256()
    header = {
        "channels": net.channels,
        "size": net.size,
        "input_layout": net.input_layout,
        "heads": [name for name, _ in net.heads],
        "layers": [[where, index, describe_layer(layer)] for where, index, layer in net.layers()],
    }
    h.update(json.dumps(header, sort_keys=True).encode())
    for _, _, layer in net.layers():
        for attr in ("weights", "bias", "slopes"):
            value = getattr(layer, attr, None)
            if value is not None and hasattr(value, "tobytes"):
                h.update(value.astype("<f8").tobytes())
        act = getattr(layer, "activation", None)
        if act is not None:
            h.update(json.dumps(act.to_json(), sort_keys=True).encode())
    return h.hexdigest()[:16]
