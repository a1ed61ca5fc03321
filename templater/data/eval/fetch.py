"""The evaluation photos: found inside installed packages by labels.json and checked by sha256.

No photo is committed: each stays in the package that ships it (Debian's opencv-doc, scikit-image,
matplotlib). Run `python -m templater.data.eval.fetch` to list where each photo is and whether
its sha256 matches; it exits 1 if any is missing or differs. opencv-doc comes from apt:
`apt-get install opencv-doc`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from templater.errors import UsageError

LABELS = Path(__file__).with_name("labels.json")
SETS = ("eval", "tuning")
DEBIAN_DOC = Path("/usr/share/doc")
HINTS = {
    "opencv-doc": "apt-get install opencv-doc",
    "scikit-image": "pip install scikit-image",
    "matplotlib": "pip install matplotlib",
}


@dataclass(frozen=True)
class Photo:
    """One labelled photo: where it is, its faces and ignore regions ([x0, y0, x1, y1] edges)."""

    name: str
    set: str
    package: str
    path: str
    sha256: str
    size: tuple[int, int]  # (width, height)
    licence: str
    faces: tuple[tuple[float, float, float, float], ...]
    ignore: tuple[tuple[float, float, float, float], ...]

    @property
    def file(self) -> Path | None:
        root = package_root(self.package)
        return None if root is None else root / self.path


def _no_constants(value: str) -> None:
    raise ValueError(f"labels.json: {value} is not allowed")


def load_labels(path: Path = LABELS) -> dict[str, Any]:
    """The labels file, strictly parsed (no NaN or Infinity)."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constants)


def package_root(package: str) -> Path | None:
    """The folder that a photo's `path` is relative to, or None when the package is absent."""
    if package == "opencv-doc":
        root = DEBIAN_DOC / "opencv-doc"
        return root if root.is_dir() else None
    module = {"scikit-image": "skimage", "matplotlib": "matplotlib"}.get(package)
    if module is None:
        raise UsageError(f"labels.json names an unknown package {package!r}")
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def photos(set_name: str | None = None, labels: dict[str, Any] | None = None) -> list[Photo]:
    """The labelled photos of one set ('eval' or 'tuning'), or of both when set_name is None."""
    if set_name is not None and set_name not in SETS:
        raise UsageError(f"unknown set {set_name!r}; choose one of {', '.join(SETS)}")
    labels = load_labels() if labels is None else labels
    out = []
    for entry in labels["photos"]:
        if set_name is not None and entry["set"] != set_name:
            continue
        out.append(
            Photo(
                name=entry["name"],
                set=entry["set"],
                package=entry["package"],
                path=entry["path"],
                sha256=entry["sha256"],
                size=(int(entry["size"][0]), int(entry["size"][1])),
                licence=entry["licence"],
                faces=tuple(tuple(float(v) for v in box) for box in entry["faces"]),
                ignore=tuple(tuple(float(v) for v in box) for box in entry["ignore"]),
            )
        )
    return out


def status(photo: Photo) -> str:
    """'ok', 'missing' (package or file absent) or 'changed' (sha256 differs)."""
    file = photo.file
    if file is None or not file.is_file():
        return "missing"
    digest = hashlib.sha256(file.read_bytes()).hexdigest()
    return "ok" if digest == photo.sha256 else "changed"


def require(photo: Photo) -> Path:
    """The photo's file, or a UsageError saying how to get it."""
    state = status(photo)
    if state == "missing":
        raise UsageError(
            f"photo {photo.name!r} ({photo.package}: {photo.path}) is missing; "
            f"install it: {HINTS.get(photo.package, photo.package)}"
        )
    if state == "changed":
        raise UsageError(
            f"photo {photo.name!r} at {photo.file} differs from the labelled one (sha256); "
            "the labels fit only the labelled version"
        )
    return photo.file  # type: ignore[return-value]


def load_rgb(photo: Photo) -> np.ndarray:
    """The checked photo as a uint8 (rows, cols, 3) RGB array (palette, gray, alpha converted)."""
    from PIL import Image

    with Image.open(require(photo)) as image:
        return np.asarray(image.convert("RGB"))


def main(argv: list[str] | None = None) -> int:
    del argv
    bad = 0
    for photo in photos():
        state = status(photo)
        bad += state != "ok"
        print(f"{state:8s} {photo.set:7s} {photo.name:22s} {photo.file or photo.package}")
    if bad:
        print(f"{bad} photo(s) missing or changed; opencv-doc: {HINTS['opencv-doc']}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
