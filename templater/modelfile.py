"""Model files: an .npz (never pickled) of float64 weights plus a JSON header; save and load.

Layout of the zip (stored, fixed timestamps, sorted members, so equal networks give equal bytes):
`header.npy` (uint8 JSON text) and `layers.<i>.weights.npy` / `layers.<i>.bias.npy`. Loading
checks every declared size before reading a weight and never allows pickles.
"""

from __future__ import annotations

import hashlib
import io
import json
import lzma
import math
import os
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import MalformedModelError, TemplaterError, TooLargeError, UnsafeInputError
from templater.fileio import npy_header, read_bounded, write_atomic
from templater.network import (
    MAX_PARAMETERS,
    Activation,
    Dense,
    Head,
    Network,
    Normalization,
    check_sizes,
)

FORMAT = "templater.model"
VERSION = 1
CONV_VERSION = 2  # convolutional networks (templater.convfile); version 1 files load as before
HEADER_MEMBER = "header.npy"
MAX_HEADER_BYTES = 1 << 20
# A stored model holds 8 bytes per parameter plus small npy headers.
MAX_FILE_BYTES = 8 * (MAX_PARAMETERS + 1) + 4 * MAX_HEADER_BYTES
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_FLOAT_DTYPES = ("<f8", ">f8", "<f4", ">f4")


# -- save -------------------------------------------------------------------------------------
def header_of(net: Network) -> dict[str, Any]:
    """The JSON header of a network (what `load` reads back)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "name": net.name,
        "input": {
            "size": net.input_size,
            "shape": list(net.input_shape) if net.input_shape is not None else None,
            "normalization": net.normalization.to_json(),
        },
        "layers": [
            {
                "type": "dense",
                "inputs": layer.n_inputs,
                "outputs": layer.n_outputs,
                "activation": layer.activation.to_json(),
                "name": layer.name,
            }
            for layer in net.layers
        ],
        "head": net.head.to_json(),
        "metadata": net.metadata,
    }


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def network_digest(net: Network) -> str:
    """sha256 over the structure and the weights' bytes; name and metadata left out."""
    header = header_of(net)
    for key in ("name", "metadata"):
        header.pop(key)
    for layer in header["layers"]:
        layer.pop("name")
    h = hashlib.sha256(canonical_json(header).encode("ascii"))
    for layer in net.layers:
        h.update(layer.weights.astype("<f8").tobytes())
        h.update(layer.bias.astype("<f8").tobytes())
    return h.hexdigest()[:16]


def to_bytes(net: Network) -> bytes:
    """The model file's bytes: deterministic for a given network."""
    try:
        header = canonical_json(header_of(net)).encode("ascii")
    except (TypeError, ValueError) as exc:
        raise MalformedModelError(f"model metadata is not plain finite JSON: {exc}") from exc
    members = {HEADER_MEMBER: np.frombuffer(header, dtype=np.uint8)}
    for i, layer in enumerate(net.layers):
        members[f"layers.{i}.weights.npy"] = layer.weights.astype("<f8")
        members[f"layers.{i}.bias.npy"] = layer.bias.astype("<f8")
    return zip_members(members)


def zip_members(members: dict[str, np.ndarray]) -> bytes:
    """A stored zip of .npy members in sorted order with fixed timestamps (same bytes always)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in sorted(members):
            npy = io.BytesIO()
            np.lib.format.write_array(npy, members[name], allow_pickle=False)
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.create_system = 3
            archive.writestr(info, npy.getvalue())
    return buffer.getvalue()


def save(net: Network, path: str | os.PathLike) -> Path:
    return write_atomic(path, to_bytes(net))


# -- load -------------------------------------------------------------------------------------
def load(path: str | os.PathLike, conv_reader: Any = None) -> Network:
    """Read and validate a model file. Raises a TemplaterError naming the file and the problem.

    `conv_reader`: what reads a version 2 (convolutional) header; templater.convfile passes
    its own, so that this module needs nothing of convolutional networks."""
    return from_bytes(read_bounded(path, MAX_FILE_BYTES, "model"), str(path), conv_reader)


def from_bytes(data: bytes, where: str = "<bytes>", conv_reader: Any = None) -> Network:
    if data[:2] == b"\x80\x04" or data[:1] == b"\x80":
        raise UnsafeInputError(f"{where}: this is a pickle; templater never unpickles")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = {info.filename: info for info in archive.infolist()}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        # NotImplementedError: a zip version or feature Python's zipfile does not read
        raise MalformedModelError(
            f"{where}: file is truncated or not a templater .npz model file ({exc})"
        ) from exc
    if HEADER_MEMBER not in infos:
        raise MalformedModelError(f"{where}: not a templater model file (no {HEADER_MEMBER})")
    declared = sum(info.file_size for info in infos.values())
    if declared > MAX_FILE_BYTES:
        raise TooLargeError(
            f"{where}: members declare {declared:,} bytes uncompressed; "
            f"the limit is {MAX_FILE_BYTES:,}"
        )
    raw = _read_member(archive, infos[HEADER_MEMBER], where, {"|u1"}, None)
    if raw.ndim != 1 or raw.size > MAX_HEADER_BYTES:
        raise MalformedModelError(f"{where}: header must be 1-D uint8 text under 1 MiB")
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedModelError(f"{where}: header is not UTF-8 text ({exc})") from exc
    header = _strict_json(text, where)
    return _network_from_header(header, archive, infos, where, conv_reader)


def _network_from_header(
    header: Any,
    archive: zipfile.ZipFile,
    infos: dict[str, zipfile.ZipInfo],
    where: str,
    conv_reader: Any = None,
) -> Network:
    h = _Fields(header, where, "header")
    if h.get("format", str) != FORMAT:
        raise MalformedModelError(f"{where}: header format is not {FORMAT!r}")
    version = h.get("version", int)
    if version == CONV_VERSION and conv_reader is not None:
        return conv_reader(h, archive, infos, where)
    if version == CONV_VERSION:
        raise MalformedModelError(
            f"{where}: a convolutional model file (version {CONV_VERSION}); "
            "load it with templater.load_model or templater.convfile.load"
        )
    if version != VERSION:
        raise MalformedModelError(
            f"{where}: model format version {version} (this templater reads {VERSION})"
        )
    inp = _Fields(h.get("input", dict), where, "header.input")
    input_size = inp.get("size", int)
    shape = inp.get("shape", (list, type(None)))
    norm = _Fields(inp.get("normalization", dict), where, "header.input.normalization")
    layer_specs = h.get("layers", list)
    specs = [
        _Fields(spec, where, f"header.layers[{i}]", dict) for i, spec in enumerate(layer_specs)
    ]
    shapes = [(s.get("inputs", int), s.get("outputs", int)) for s in specs]
    try:
        check_sizes(input_size, shapes)  # before reading a single weight
    except TemplaterError as exc:
        raise type(exc)(f"{where}: {exc}") from exc
    expected = {HEADER_MEMBER}
    layers = []
    try:
        for i, (spec, (n_in, n_out)) in enumerate(zip(specs, shapes, strict=True)):
            if spec.get("type", str) != "dense":
                raise MalformedModelError(f"header.layers[{i}].type must be 'dense'")
            act = _Fields(spec.get("activation", dict), where, f"header.layers[{i}].activation")
            activation = Activation(
                act.get("name", str),
                act.get("alpha", (float, int, type(None)), None),
                act.get("beta", (float, int, type(None)), None),
            )
            names = (f"layers.{i}.weights.npy", f"layers.{i}.bias.npy")
            for name in names:
                if name not in infos:
                    raise MalformedModelError(f"member {name} is missing")
            expected.update(names)
            weights = _read_member(archive, infos[names[0]], where, _FLOAT_DTYPES, (n_in, n_out))
            bias = _read_member(archive, infos[names[1]], where, _FLOAT_DTYPES, (n_out,))
            try:
                layers.append(Dense(weights, bias, activation, name=spec.get("name", str, "")))
            except TemplaterError as exc:
                raise type(exc)(f"header.layers[{i}]: {exc}") from exc
        extra = sorted(set(infos) - expected)
        if extra:
            raise MalformedModelError(f"unexpected members {extra}")
        hd = _Fields(h.get("head", dict), where, "header.head")
        labels = hd.get("labels", (list, type(None)), None)
        head = Head(
            hd.get("kind", str),
            hd.get("threshold", (float, int, type(None)), None),
            tuple(labels) if labels is not None else None,
        )
        net = Network(
            input_size=input_size,
            layers=tuple(layers),
            head=head,
            normalization=Normalization(norm.get("kind", str), norm.get("eps", (float, int))),
            input_shape=tuple(shape) if shape is not None else None,
            name=h.get("name", str, ""),
            metadata=h.get("metadata", dict, {}),
        )
    except TemplaterError as exc:
        if str(exc).startswith(where):
            raise
        raise type(exc)(f"{where}: {exc}") from exc
    return net


def _read_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    where: str,
    dtypes: set[str] | tuple[str, ...],
    shape: tuple[int, ...] | None,
) -> np.ndarray:
    """One .npy member, its header checked against what is expected before the data is read."""
    name = info.filename
    try:
        with archive.open(info) as handle:
            got_shape, fortran, dtype = npy_header(handle)
            if dtype.hasobject:
                raise UnsafeInputError(
                    f"{where}: member {name} holds Python objects (a pickle); refused as unsafe"
                )
            if dtype.str not in dtypes:
                raise MalformedModelError(
                    f"{where}: member {name} has dtype {dtype.str}; "
                    f"expected one of {sorted(dtypes)}"
                )
            if shape is not None and tuple(got_shape) != shape:
                raise MalformedModelError(
                    f"{where}: member {name} has shape {tuple(got_shape)}; "
                    f"the header declares {shape}"
                )
            count = math.prod(got_shape)
            nbytes = count * dtype.itemsize
            if nbytes > info.file_size:
                raise MalformedModelError(
                    f"{where}: member {name} declares {nbytes:,} bytes of data but holds "
                    f"{info.file_size:,}; file is truncated"
                )
            body = handle.read(nbytes + 1)
    except TemplaterError:
        raise
    except (
        zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError, NotImplementedError,
        RuntimeError, zlib.error, lzma.LZMAError,
    ) as exc:  # a compression method zipfile lacks, an encrypted member, corrupt deflate data
        raise MalformedModelError(
            f"{where}: member {name} is truncated or not an .npy array ({exc})"
        ) from exc
    if len(body) != nbytes:
        raise MalformedModelError(
            f"{where}: member {name} holds {len(body)} data bytes, its header declares {nbytes}"
        )
    arr = np.frombuffer(body, dtype=dtype).reshape(got_shape, order="F" if fortran else "C")
    return arr


# -- strict JSON -------------------------------------------------------------------------------
class _Bad:
    """Marks a value that strict parsing refuses, so the walk can name its key path."""

    def __init__(self, why: str):
        self.why = why


class _Duplicate(dict):
    def __init__(self, key: str):
        super().__init__()
        self.key = key


def _strict_json(text: str, where: str) -> Any:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in items:
            if key in out:
                return _Duplicate(key)
            out[key] = value
        return out

    def parse_float(s: str) -> Any:
        value = float(s)
        return value if math.isfinite(value) else _Bad(f"{s} is not a finite float")

    try:
        value = json.loads(
            text,
            object_pairs_hook=pairs,
            parse_constant=lambda s: _Bad(f"{s} is not allowed"),
            parse_float=parse_float,
        )
    except (json.JSONDecodeError, RecursionError) as exc:
        raise MalformedModelError(f"{where}: header is not valid JSON ({exc})") from exc
    _refuse_marked(value, where, "header")
    return value


def _refuse_marked(value: Any, where: str, path: str) -> None:
    if isinstance(value, _Bad):
        raise MalformedModelError(f"{where}: at {path}: {value.why}")
    if isinstance(value, _Duplicate):
        raise MalformedModelError(f"{where}: at {path}: duplicate key {value.key!r}")
    if isinstance(value, dict):
        for key, item in value.items():
            _refuse_marked(item, where, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _refuse_marked(item, where, f"{path}[{i}]")


_MISSING = object()


class _Fields:
    """Typed access to a JSON object, with errors that name the key path."""

    def __init__(self, obj: Any, where: str, path: str, kind: type = dict):
        if not isinstance(obj, kind):
            raise MalformedModelError(
                f"{where}: {path} must be an object, got {type(obj).__name__}"
            )
        self.obj, self.where, self.path = obj, where, path

    def get(self, key: str, types: type | tuple[type, ...], default: Any = _MISSING) -> Any:
        if key not in self.obj:
            if default is _MISSING:
                raise MalformedModelError(f"{self.where}: {self.path}.{key} is missing")
            return default
        value = self.obj[key]
        if isinstance(value, bool) and bool not in (
            types if isinstance(types, tuple) else (types,)
        ):
            value = _MISSING  # JSON true/false is not a number here
        if value is _MISSING or not isinstance(value, types):
            names = [t.__name__ for t in (types if isinstance(types, tuple) else (types,))]
            raise MalformedModelError(
                f"{self.where}: {self.path}.{key} must be {' or '.join(names)}, "
                f"got {self.obj[key]!r:.60}"
            )
        return value
