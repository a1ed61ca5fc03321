"""examples/embed_window_detector.py: a copied window program finds faces without templater."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from templater.data.faces import photo
from templater.golden import default_root

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "embed_window_detector.py"
# Runs the example in a clean interpreter where importing templater is impossible.
RUNNER = (
    "import runpy, sys; sys.modules['templater'] = None; "
    "sys.argv = ['embed_window_detector.py', 'face_numba.py', sys.argv[1]]; "
    "runpy.run_path('embed_window_detector.py', run_name='__main__')"
)


@pytest.mark.slow
def test_example_finds_the_faces_from_a_copied_program_alone(tmp_path, committed_face):
    _, program = committed_face
    shutil.copy(default_root() / "face" / "face_numba.py", tmp_path / "face_numba.py")
    shutil.copy(EXAMPLE, tmp_path / "embed_window_detector.py")
    image = np.ascontiguousarray(photo("astronaut")[:256, 96:352])
    np.save(tmp_path / "photo.npy", image)
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp_path / "photo.png")
    rgb = np.asarray(Image.open(tmp_path / "photo.png").convert("RGB")) / 255.0
    expected = {
        "photo.npy": program.find_faces(image),  # the same pixels: the same boxes, bit for bit
        "photo.png": program.find_faces(rgb @ np.array([0.2125, 0.7154, 0.0721])),  # 8-bit pixels
    }
    for name, boxes in expected.items():
        assert len(boxes) >= 1
        run = subprocess.run(
            [sys.executable, "-I", "-c", RUNNER, name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert run.returncode == 0, run.stderr
        got = np.array([[float(v) for v in line.split()] for line in run.stdout.splitlines()])
        assert np.array_equal(got.reshape(-1, 4), boxes)
        assert f"{len(boxes)} face(s) found by program {program.MODEL_DIGEST}" in run.stderr
