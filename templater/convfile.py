"""Model files of convolutional networks: version 2 of templater's .npz format, and the digest.

The same container as version 1 (templater.modelfile: stored zip, sorted members, fixed
timestamps, never a pickle): `header.npy` (JSON) plus one float64 .npy member per array, named
`trunk.<i>.<array>.npy` or `heads.<h>.<i>.<array>.npy`. The header lists every layer with its
attributes and the shapes of its arrays, all checked before a weight is read.
"""

from __future__ import annotations

import hashlib
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from templater.convnet import (
    LAYER_KINDS,
    Act,
    Conv2D,
    ConvNetwork,
    Flatten,
    GlobalAvgPool,
    Layer,
    Pool2D,
    PReLU,
)
from templater.errors import MalformedModelError, TemplaterError, TooLargeError
from templater.fileio import write_atomic
from templater.network import MAX_PARAMETERS, Activation, Dense

VERSION = 2
ARRAYS = ("weights", "bias", "slopes")


def _attributes(layer: Layer) -> dict[str, Any]:
    """A layer's attributes as JSON (arrays aside)."""
    if isinstance(layer, Conv2D):
        pad = layer.padding
        return {
            "stride": list(layer.stride),
            "padding": pad if isinstance(pad, str) else list(pad),
            "groups": layer.groups,
        }
    if isinstance(layer, Pool2D):
        pad = layer.padding
        return {
            "pool": layer.kind,
            "kernel": list(layer.kernel),
            "stride": list(layer.stride),
            "padding": pad if isinstance(pad, str) else list(pad),
            "ceil_mode": layer.ceil_mode,
            "count_include_pad": layer.count_include_pad,
        }
    if isinstance(layer, Act):
        return {"activation": layer.activation.to_json()}
    if isinstance(layer, Dense):
        return {"activation": layer.activation.to_json()}
    if isinstance(layer, Flatten):
        return {"order": layer.order}
    return {}


def _arrays(layer: Layer) -> dict[str, np.ndarray]:
    return {a: getattr(layer, a) for a in ARRAYS if isinstance(getattr(layer, a, None), np.ndarray)}


def header_of(net: ConvNetwork) -> dict[str, Any]:
    def spec(layer: Layer) -> dict[str, Any]:
        return {
            "type": LAYER_KINDS[type(layer)],
            "name": layer.name,
            "arrays": {k: list(v.shape) for k, v in _arrays(layer).items()},
            **_attributes(layer),
        }

    return {
        "format": "templater.model",
        "version": VERSION,
        "kind": "conv",
        "name": net.name,
        "input": {
            "channels": net.channels,
            "size": list(net.size) if net.size is not None else None,
            "layout": net.input_layout,
        },
        "trunk": [spec(layer) for layer in net.trunk],
        "heads": [
            {"name": name, "layers": [spec(x) for x in layers]} for name, layers in net.heads
        ],
        "metadata": net.metadata,
    }


def _members(net: ConvNetwork) -> dict[str, np.ndarray]:
    out = {}
    for i, layer in enumerate(net.trunk):
        for key, value in _arrays(layer).items():
            out[f"trunk.{i}.{key}.npy"] = value.astype("<f8")
    for h, (_, layers) in enumerate(net.heads):
        for i, layer in enumerate(layers):
            for key, value in _arrays(layer).items():
                out[f"heads.{h}.{i}.{key}.npy"] = value.astype("<f8")
    return out


def to_bytes(net: ConvNetwork) -> bytes:
    from templater.modelfile import HEADER_MEMBER, canonical_json, zip_members

    try:
        header = canonical_json(header_of(net)).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise MalformedModelError(f"model metadata is not plain finite JSON: {exc}") from exc
    return zip_members({HEADER_MEMBER: np.frombuffer(header, dtype=np.uint8), **_members(net)})


def save(net: ConvNetwork, path: str | os.PathLike) -> Path:
    return write_atomic(path, to_bytes(net))


def convnet_digest(net: ConvNetwork) -> str:
    """sha256 over the structure and the weights' bytes; name and metadata left out."""
    from templater.modelfile import canonical_json

    header = header_of(net)
    for key in ("name", "metadata"):
        header.pop(key)
    for spec in header["trunk"] + [x for head in header["heads"] for x in head["layers"]]:
        spec.pop("name")
    h = hashlib.sha256(canonical_json(header).encode("ascii"))
    for value in _members(net).values():
        h.update(value.tobytes())
    return h.hexdigest()[:16]


# -- load -------------------------------------------------------------------------------------
def convnet_from_header(
    h: Any, archive: zipfile.ZipFile, infos: dict[str, zipfile.ZipInfo], where: str
) -> ConvNetwork:
    """The ConvNetwork of a version 2 header (`h`: modelfile's typed view of the header)."""
    from templater.modelfile import HEADER_MEMBER, _Fields, _read_member

    if h.get("kind", str) != "conv":
        raise MalformedModelError(f"{where}: a version {VERSION} header must be of kind 'conv'")
    inp = _Fields(h.get("input", dict), where, "header.input")
    trunk_specs = h.get("trunk", list)
    head_specs = [
        _Fields(x, where, f"header.heads[{i}]") for i, x in enumerate(h.get("heads", list))
    ]
    # every declared array size, before anything is read
    declared = 0
    places = [("trunk", i, s) for i, s in enumerate(trunk_specs)] + [
        (f"heads.{k}", i, s)
        for k, head in enumerate(head_specs)
        for i, s in enumerate(head.get("layers", list))
    ]
    for where_in, i, spec in places:
        arrays = _Fields(spec, where, f"header.{where_in}[{i}]").get("arrays", dict)
        for shape in arrays.values():
            if not isinstance(shape, list) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
            ):
                raise MalformedModelError(f"{where}: header.{where_in}[{i}]: bad array shape")
            declared += math.prod(shape)
    if declared > MAX_PARAMETERS:
        raise TooLargeError(
            f"{where}: model declares {declared:,} parameters; the limit is {MAX_PARAMETERS:,}"
        )
    expected = {HEADER_MEMBER}

    def read(prefix: str, spec_obj: Any, label: str) -> Layer:
        spec = _Fields(spec_obj, where, label)
        arrays = {}
        for key, shape in spec.get("arrays", dict).items():
            if key not in ARRAYS:
                raise MalformedModelError(f"{where}: {label}: unknown array {key!r}")
            member = f"{prefix}.{key}.npy"
            if member not in infos:
                raise MalformedModelError(f"{where}: member {member} is missing")
            expected.add(member)
            arrays[key] = _read_member(
                archive, infos[member], where, ("<f8", ">f8", "<f4", ">f4"), tuple(shape)
            )
        try:
            return _layer(spec, arrays)
        except TemplaterError as exc:
            raise type(exc)(f"{where}: {label}: {exc}") from exc

    trunk = tuple(read(f"trunk.{i}", s, f"header.trunk[{i}]") for i, s in enumerate(trunk_specs))
    heads = tuple(
        (
            head.get("name", str),
            tuple(
                read(f"heads.{k}.{i}", s, f"header.heads[{k}].layers[{i}]")
                for i, s in enumerate(head.get("layers", list))
            ),
        )
        for k, head in enumerate(head_specs)
    )
    extra = sorted(set(infos) - expected)
    if extra:
        raise MalformedModelError(f"{where}: unexpected members {extra}")
    size = inp.get("size", (list, type(None)))
    try:
        return ConvNetwork(
            channels=inp.get("channels", int),
            trunk=trunk,
            heads=heads,
            size=tuple(size) if size is not None else None,
            input_layout=inp.get("layout", str),
            name=h.get("name", str, ""),
            metadata=h.get("metadata", dict, {}),
        )
    except TemplaterError as exc:
        raise type(exc)(f"{where}: {exc}") from exc


def _layer(spec: Any, arrays: dict[str, np.ndarray]) -> Layer:
    kind = spec.get("type", str)
    name = spec.get("name", str, "")

    def need(key: str) -> np.ndarray:
        if key not in arrays:
            raise MalformedModelError(f"a {kind} layer needs its {key}")
        return arrays[key]

    def padding() -> Any:
        value = spec.get("padding", (list, str))
        return value if isinstance(value, str) else tuple(value)

    def activation() -> Activation:
        act = spec.get("activation", dict)
        return Activation(act.get("name"), act.get("alpha"), act.get("beta"))

    if kind == "conv2d":
        return Conv2D(
            need("weights"),
            need("bias"),
            tuple(spec.get("stride", list)),
            padding(),
            spec.get("groups", int),
            name,
        )
    if kind == "pool2d":
        return Pool2D(
            spec.get("pool", str),
            tuple(spec.get("kernel", list)),
            tuple(spec.get("stride", list)),
            padding(),
            spec.get("ceil_mode", bool),
            spec.get("count_include_pad", bool),
            name,
        )
    if kind == "global_avg_pool":
        return GlobalAvgPool(name)
    if kind == "prelu":
        return PReLU(need("slopes"), name)
    if kind == "activation":
        return Act(activation(), name)
    if kind == "flatten":
        return Flatten(spec.get("order", str), name)
    if kind == "dense":
        return Dense(need("weights"), need("bias"), activation(), name)
    raise MalformedModelError(f"unknown layer type {kind!r}")


def load_any_version(path: str | os.PathLike) -> Any:
    """A model file of either version: a Network (1) or a ConvNetwork (2)."""
    from templater.modelfile import load as load_model

    return load_model(path, conv_reader=convnet_from_header)


def from_bytes(data: bytes, where: str = "<bytes>") -> Any:
    from templater.modelfile import from_bytes as model_from_bytes

    return model_from_bytes(data, where, conv_reader=convnet_from_header)


def load(path: str | os.PathLike) -> ConvNetwork:
    net = load_any_version(path)
    if not isinstance(net, ConvNetwork):
        raise MalformedModelError(f"{path}: not a convolutional model file")
    return net
