"""Golden programs: re-render everything under generated/ from the model files committed there.

`generated/manifest.json` lists each program: its model file, target, layout and output file
(paths relative to generated/), and optionally its dtype and kind (`mtcnn`: the model is a
folder of pnet.npz, rnet.npz and onet.npz, compiled into one detector by
templater.mtcnn_program; `own`: templater.own_detector's model file). Regenerating must give
byte-identical files; `check` reports unified diffs instead of writing.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from pathlib import Path

from templater.compiler import compile as compile_network
from templater.errors import MalformedModelError
from templater.fileio import write_atomic
from templater.models import load_model

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Entry:
    model: str
    target: str
    layout: str
    output: str
    dtype: str = "float64"
    kind: str = "network"


@dataclass(frozen=True)
class Outcome:
    entry: Entry
    changed: bool
    diff: str  # unified diff from the committed file to the fresh rendering ("" when equal)


def default_root() -> Path:
    """generated/ beside the package in a checkout, else ./generated."""
    beside = Path(__file__).resolve().parent.parent / "generated"
    return beside if beside.is_dir() else Path("generated")


def read_manifest(root: Path) -> list[Entry]:
    path = root / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [Entry(**item) for item in data["programs"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MalformedModelError(f"{path}: not a readable manifest ({exc})") from exc


def regenerate(root: Path | None = None, check: bool = False) -> list[Outcome]:
    """Render every manifest entry; write changed files unless `check`. Models load once each."""
    root = root or default_root()
    outcomes = []
    models: dict[str, object] = {}
    for entry in read_manifest(root):
        fresh = _render(entry, root, models)
        out = root / entry.output
        old = out.read_text(encoding="utf-8") if out.exists() else ""
        diff = ""
        if old != fresh:
            diff = "".join(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    fresh.splitlines(keepends=True),
                    f"committed/{entry.output}",
                    f"regenerated/{entry.output}",
                    n=2,
                )
            )
            if not check:
                write_atomic(out, fresh)
        outcomes.append(Outcome(entry, old != fresh, diff))
    return outcomes


def _render(entry: Entry, root: Path, models: dict[str, object]) -> str:
    if entry.kind == "mtcnn":
        from templater.mtcnn_files import NETS
        from templater.mtcnn_program import compile_mtcnn

        nets = {name: load_model(root / entry.model / f"{name}.npz") for name in NETS}
        return compile_mtcnn(nets, entry.dtype, entry.layout)
    if entry.kind == "own":  # templater's own conv detector: its model file is own_detector's
        from templater.conv_compiler import compile_conv
        from templater.own_detector import load
        from templater.own_train import provenance

        detector = load(root / entry.model)
        return compile_conv(detector.network(), entry.target, entry.layout, entry.dtype,
                            provenance(detector))
    if entry.kind != "network":
        raise MalformedModelError(f"manifest: unknown kind {entry.kind!r}")
    if entry.model not in models:
        models[entry.model] = load_model(root / entry.model)
    return compile_network(models[entry.model], entry.target, entry.layout, dtype=entry.dtype)
