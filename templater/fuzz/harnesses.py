"""The harnesses: one function per reader, taking the fuzzer's bytes; and their seed inputs."""

from __future__ import annotations

import contextlib
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from templater.errors import TemplaterError

ROOT = Path(__file__).resolve().parent.parent.parent
# Seeds that would create this file if any reader ran them as code.
MARKER = "templater_fuzz_code_ran"


@dataclass(frozen=True)
class Harness:
    """`run(data, folder)` reads `data` the way the command does, inside `folder`."""

    name: str
    run: Callable[[bytes, Path], None]
    seeds: Callable[[], list[bytes]]
    expected: tuple[type[BaseException], ...] = (TemplaterError,)


# -- model files ----------------------------------------------------------------------------------
def run_loader(data: bytes, folder: Path) -> None:
    """A model file: raw bytes when the first byte is even, else a valid archive around a fuzzed
    JSON header (the committed digits model's arrays), so the header parser sees deep inputs."""
    from templater.modelfile import load

    if data[:1] and data[0] % 2:
        data = _with_header(data[1:])
    path = folder / "model.npz"
    path.write_bytes(data)
    load(path)


def _with_header(header: bytes) -> bytes:
    from templater.modelfile import HEADER_MEMBER

    members = _digits_members()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, payload in members.items():
            if name == HEADER_MEMBER:
                npy = io.BytesIO()
                np.lib.format.write_array(npy, np.frombuffer(header, dtype=np.uint8))
                payload = npy.getvalue()
            archive.writestr(name, payload)
    return out.getvalue()


_MEMBERS: dict[str, bytes] = {}


def _digits_members() -> dict[str, bytes]:
    if not _MEMBERS:
        with zipfile.ZipFile(ROOT / "generated" / "digits" / "model.npz") as archive:
            _MEMBERS.update({n: archive.read(n) for n in archive.namelist()})
    return _MEMBERS


def loader_seeds() -> list[bytes]:
    from templater.modelfile import HEADER_MEMBER

    model = (ROOT / "generated" / "digits" / "model.npz").read_bytes()
    header = np.load(io.BytesIO(_digits_members()[HEADER_MEMBER])).tobytes()
    evil = json.dumps({"format": "templater.model", "version": 1, "name": f"{_CODE}"}).encode()
    return [b"\x00" + model, b"\x01" + header, b"\x01" + evil, b"\x01{}", b"\x00PK\x03\x04"]


# -- ONNX -----------------------------------------------------------------------------------------
def run_onnx(data: bytes, folder: Path) -> None:
    from templater.importers.onnx import from_onnx

    path = folder / "model.onnx"
    path.write_bytes(data)
    from_onnx(path)


def onnx_seeds() -> list[bytes]:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(np.zeros(3, np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(size=(3, 1)).astype(np.float32), "w2")
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"], name=_CODE),
        helper.make_node("MatMul", ["r", "w2"], ["m"]),
        helper.make_node("Sigmoid", ["m"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])], [w1, b1, w2],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    seeds = [model.SerializeToString()]
    for path in sorted((ROOT / "tests").rglob("*.onnx"))[:4]:
        if path.stat().st_size < 100_000:
            seeds.append(path.read_bytes())
    seeds.append(onnx.ModelProto().SerializeToString())
    return seeds


# -- images ---------------------------------------------------------------------------------------
_IMAGE_SUFFIXES = (".png", ".jpg", ".npy", ".gif", ".bmp", ".tif", ".webp", ".png")


def run_image(data: bytes, folder: Path) -> None:
    """The picture reader of `detect`; the first byte picks the file name's extension."""
    from templater.detect import read_image

    if not data:
        return
    path = folder / f"image{_IMAGE_SUFFIXES[data[0] % len(_IMAGE_SUFFIXES)]}"
    path.write_bytes(data[1:])
    try:
        read_image(path)
    finally:
        path.unlink()


def image_seeds() -> list[bytes]:
    from PIL import Image

    rng = np.random.default_rng(0)
    seeds = []
    for index, (fmt, mode) in enumerate(
        (("PNG", "L"), ("JPEG", "RGB"), (None, None), ("GIF", "P"), ("BMP", "RGB"),
         ("TIFF", "I;16"), ("WEBP", "RGBA"), ("PNG", "RGBA"))
    ):
        if fmt is None:
            npy = io.BytesIO()
            np.save(npy, rng.random((30, 30)))
            seeds.append(bytes([index]) + npy.getvalue())
            continue
        pixels = (rng.random((30, 32, 4)) * 255).astype(np.uint8)
        im = Image.fromarray(pixels, "RGBA").convert(mode if mode != "I;16" else "L")
        if mode == "I;16":
            im = Image.fromarray((rng.random((30, 32)) * 65535).astype(np.uint16))
        out = io.BytesIO()
        im.save(out, format=fmt)
        seeds.append(bytes([index]) + out.getvalue())
    return seeds


# -- programs -------------------------------------------------------------------------------------
def run_program(data: bytes, folder: Path) -> None:
    from templater.verify import read_program

    path = folder / "program.py"
    path.write_bytes(data)
    read_program(path)


def program_seeds() -> list[bytes]:
    small = (ROOT / "generated" / "digits" / "digits_python.py").read_bytes()
    header = small.split(b"\n# layer", 1)[0]
    return [
        small,
        header + b"\ndef _kernel(x):\n    return 0.0\n\n\ndef score_batch(r):\n    return r\n",
        header.replace(b"N_INPUTS = 64", b"N_INPUTS = " + _CODE.encode()),
        _CODE.encode(),
        b"MODEL_DIGEST = (" * 50,
    ]


# -- the command line -----------------------------------------------------------------------------
_WORDS = (
    "compile", "detect", "diff", "verify", "import", "train", "demo", "bench", "regenerate",
    "compare", "-o", "--output", "--target", "numba", "python", "--layout", "table", "--dtype",
    "float32", "--json", "--png", "--data", "--threshold", "--stride", "--count", "--seed",
    "--help", "--version", "--repeats", "--tensor", "--head", "--arch", "nan", "-1", "1e400",
    "model.npz", "x.py", "--", "=", "",
)


def run_cli(data: bytes, folder: Path) -> None:
    """Parse (never run) an argument list: each byte picks a word, or starts free text."""
    import click

    from templater.cli import main

    args = _argv(data)
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            with main.make_context("templater", list(args)) as ctx:
                remaining = [*ctx._protected_args, *ctx.args]
                if remaining:  # as click's Group.invoke: no command shows the help
                    name, command, rest = main.resolve_command(ctx, remaining)
                    if command is not None:
                        command.make_context(name, rest, parent=ctx)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            pass


def _argv(data: bytes) -> list[str]:
    args: list[str] = []
    i = 0
    while i < len(data):
        b = data[i]
        if b < 0xF0:
            args.append(_WORDS[b % len(_WORDS)])
            i += 1
        else:  # free text up to the next NUL
            end = data.find(b"\x00", i + 1)
            end = len(data) if end < 0 else end
            args.append(data[i + 1:end].decode("utf-8", "surrogateescape"))
            i = end + 1
    return args


def cli_seeds() -> list[bytes]:
    return [bytes([0, 35, 10, 11, 12, 1]), bytes([1, 35, 36, 10, 0xF0]) + b"x\x00", bytes([26])]


# Would create MARKER in the working folder if a reader executed it.
_CODE = f"__import__('pathlib').Path({MARKER!r}).write_text('ran')"

HARNESSES = {
    "loader": Harness("loader", run_loader, loader_seeds),
    "onnx": Harness("onnx", run_onnx, onnx_seeds),
    "image": Harness("image", run_image, image_seeds),
    "program": Harness("program", run_program, program_seeds),
    "cli": Harness("cli", run_cli, cli_seeds),
}


def check_folder(folder: Path, allowed: set[str]) -> None:
    """Fail when a reader left a file behind or ran code from its input."""
    extra = set(os.listdir(folder)) - allowed
    if extra:
        raise AssertionError(f"files written outside the output path: {sorted(extra)}")
