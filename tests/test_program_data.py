"""Programs read back as data: diff and verify use the LAYERS constant, never comments or names."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

import templater
from templater.diff import diff
from templater.models import load_model
from templater.network import Activation, Dense, Head, Network, Normalization
from templater.verify import read_program, verify

ROOT = Path(__file__).resolve().parent.parent
# The last commit whose generated programs had no LAYERS constant.
BEFORE_LAYERS = "711c66f"


def _net(seed: int = 0, norm: str = "window") -> Network:
    rng = np.random.default_rng(seed)
    return Network(
        36,
        (
            Dense(rng.normal(size=(36, 10)), rng.normal(size=10), Activation("relu")),
            Dense(rng.normal(size=(10, 6)), rng.normal(size=6), Activation("leaky_relu", 0.1)),
            Dense(rng.normal(size=(6, 1)), rng.normal(size=1)),
        ),
        Head("binary", 0.25),
        Normalization(norm),
        (6, 6),
    )


# sed-style edits: every comment says something else, every generated name is another name.
_EDITS = (
    (r"#.*$", "# edited by hand"),
    (r"\bl(\d)_h", r"hidden\1_"),
    (r"\bl(\d)_s", r"presum\1_"),
    (r"\bl(\d)_v", r"gathered\1_"),
    (r"\bL(\d)_W\b", r"WEIGHTS\1"),
    (r"\bL(\d)_B\b", r"BIASES\1"),
    (r"\bxn\b", "normalised"),
    (r"\bxi(\d)\b", r"lane\1"),
    (r"\b_tail\b", "_shared_layers"),
    (r"^Layer layouts: .*$", "Layouts: see the code."),
)


def _sed(text: str) -> str:
    for pattern, replacement in _EDITS:
        text = re.sub(pattern, replacement, text, flags=re.MULTILINE)
    return text


@pytest.mark.parametrize(
    ("target", "layout"),
    [("python", "unrolled"), ("python", "table"), ("numba", "auto"), ("numba", "unrolled")],
)
def test_diff_reads_a_program_whose_comments_and_names_were_edited(tmp_path, target, layout):
    net = _net()
    original = tmp_path / "a.py"
    original.write_text(templater.compile(net, target, layout), encoding="utf-8")
    edited = tmp_path / "b.py"
    edited.write_text(_sed(original.read_text()), encoding="utf-8")
    assert "# layer" not in edited.read_text() and "l1_h" not in edited.read_text()
    model = tmp_path / "m.npz"
    net.save(model)
    for side in (original, edited):
        result = diff(model, side, data=None)
        assert not result.structure.changed, result.summary_lines()
    same = diff(original, edited, data=None)
    assert not same.structure.changed
    # a changed weight is still found, under the edited names
    changed = _net()
    w = changed.layers[1].weights.copy()
    w[3, 2] += 0.5
    changed = changed.with_layers((changed.layers[0], Dense(w, changed.layers[1].bias,
                                   changed.layers[1].activation), changed.layers[2]))
    other = tmp_path / "c.py"
    other.write_text(_sed(templater.compile(changed, target, layout)), encoding="utf-8")
    found = diff(edited, other, data=None).structure.layers[1].neurons
    assert [(n.a, n.weights_changed) for n in found] == [("l2_h2", 1)]


def test_verify_gives_the_same_answer_after_the_edits(tmp_path):
    net = _net(1)
    original = tmp_path / "a.py"
    original.write_text(templater.compile(net, "python", "auto"), encoding="utf-8")
    edited = tmp_path / "b.py"
    edited.write_text(_sed(original.read_text()), encoding="utf-8")
    reports = [verify(net, p, data="random", count=200).to_json() for p in (original, edited)]
    for report in reports:
        report.pop("program")
    assert reports[0] == reports[1] and reports[0]["passed"]
    assert read_program(edited).layouts == read_program(original).layouts == ("unrolled",) * 3


def test_diff_and_verify_hold_no_regular_expression():
    for package in ("diff", "verify"):
        for path in (ROOT / "templater" / package).glob("*.py"):
            text = path.read_text(encoding="utf-8")
            assert "import re\n" not in text and "re.compile" not in text, path


def test_layers_constant_describes_each_step(tmp_path):
    path = tmp_path / "p.py"
    path.write_text(templater.compile(_net(), "numba", "auto"), encoding="utf-8")
    layers = read_program(path).layers
    assert [d["kind"] for d in layers] == ["normalize", "dense", "dense", "dense"]
    assert layers[0]["eps"] == _net().normalization.eps
    assert [d["layout"] for d in layers[1:]] == ["unrolled", "unrolled", "unrolled"]
    assert layers[2]["params"] == {"alpha": 0.1}
    assert {d["function"] for d in layers[1:]} == {"_tail"}


def _git_show(path: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{BEFORE_LAYERS}:{path}"],
            capture_output=True, text=True, check=False,
        )
    except OSError:
        return None
    return done.stdout if done.returncode == 0 else None


@pytest.mark.parametrize("name", ["face_python.py", "face_numba.py"])
def test_committed_face_programs_keep_the_model_after_gaining_the_layers_constant(name):
    """The generated files gained the LAYERS constant (and since, the numba cache key and input
    checks): the new program still holds exactly the model's weights (diff against the model
    file reads them from LAYERS and the tables), and names the model's digest."""
    old = _git_show(f"generated/face/{name}")
    if old is None:
        pytest.skip("no git history here")
    assert "LAYERS = " not in old  # the version before the constant
    new_path = ROOT / "generated" / "face" / name
    new = new_path.read_text(encoding="utf-8")
    assert "LAYERS = " in new
    result = diff(ROOT / "generated" / "face" / "model.npz", new_path, data=None)
    assert not result.structure.changed, result.summary_lines()
    assert load_model(ROOT / "generated" / "face" / "model.npz").digest() in new


def test_a_program_without_layers_is_refused_with_a_way_out(tmp_path):
    from templater.errors import MalformedModelError

    source = templater.compile(_net(), "python", "auto")
    start = source.index("LAYERS = (")
    end = source.index("\n)\n", start) + 3
    path = tmp_path / "old.py"
    path.write_text(source[:start] + source[end:], encoding="utf-8")
    assert read_program(path).layers == ()
    with pytest.raises(MalformedModelError, match=r"no LAYERS constant.*compile it again"):
        diff(path, path, data=None)
