"""Neuron coverage: coverage.py's branch coverage of the pure-Python program, mapped to neurons."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import templater
from templater.cli import main
from templater.neuron_coverage import load_rows, measure, model_subject

FACE = Path("generated/face/model.npz")
DIGITS = Path("generated/digits/model.npz")


def _numpy_states(net: templater.Network, x: np.ndarray) -> list[tuple[set, set]]:
    """Per ReLU layer, (never > 0, always > 0) units, from sums written out here: bias first,
    then input 0, 1, ... (the programs' order), independent of templater's code."""
    h = net.normalization.apply(x)
    out = []
    for layer in net.layers:
        s = np.repeat(layer.bias[None, :], len(h), axis=0)
        for i in range(layer.n_inputs):
            s = s + h[:, i : i + 1] * layer.weights[i]
        if layer.activation.name == "relu":
            on = s > 0.0
            out.append((set(np.flatnonzero(~on.any(0))), set(np.flatnonzero(on.all(0)))))
            h = np.where(on, s, 0.0)
        else:
            h = s
    return out


def _digits_npy(tmp_path: Path) -> str:
    from sklearn.datasets import load_digits

    path = tmp_path / "digits.npy"
    np.save(path, load_digits().data / 16.0)
    return str(path)


@pytest.mark.parametrize(
    ("model", "data", "rows"),
    [(FACE, "faces", 1000), (FACE, "random", 300), (DIGITS, "digits", 1000),
     (DIGITS, "random", 1000)],
)
def test_dead_neurons_equal_a_numpy_count(model, data, rows, tmp_path):
    net = templater.load(model)
    spec = _digits_npy(tmp_path) if data == "digits" else data
    chosen = load_rows(spec, net.input_size, rows)
    assert len(chosen.x) == min(rows, chosen.total)
    report = measure(model_subject(net, str(model)), chosen.x, chosen.label, chosen.total)
    expected = _numpy_states(net, chosen.x)
    assert len(report.layers) == len(expected) >= 1
    for lc, (dead, always) in zip(report.layers, expected, strict=True):
        assert set(lc.dead) == dead and set(lc.always) == always
    if model == FACE and data == "faces":
        # the speed the command promises: 1,000 face windows traced well under a minute
        print(f"face model, 1000 windows under coverage.py: {report.seconds:.2f} s")
        assert report.seconds < 60
    if model == DIGITS and data == "random":
        assert report.layers[0].dead  # the case must show something dead


def test_html_shows_a_dead_neuron_as_lines_never_run(tmp_path):
    html, out = tmp_path / "html", tmp_path / "report.json"
    result = CliRunner().invoke(
        main, ["coverage", str(DIGITS), "--data", "random", "--html", str(html),
               "--json", str(out)],
    )
    assert result.exit_code == 0, result.output
    assert "rows" in result.output and "dead on this data" in result.output
    report = json.loads(out.read_text())
    dead = report["layers"][0]["dead"]
    assert dead and report["rows_used"] == 1000
    page = next(html.glob("z_*model_python_py.html")).read_text()
    assert (html / "index.html").exists()
    source = templater.compile(templater.load(DIGITS), "python", "unrolled")
    tree = ast.parse(source)
    ifs = {
        n.test.left.id: n for n in ast.walk(tree)
        if isinstance(n, ast.If) and isinstance(n.test, ast.Compare)
        and isinstance(n.test.left, ast.Name)
    }
    node = ifs[f"l1_s{dead[0]:02d}"]
    missed = set(map(int, re.findall(r'<p class="mis[^"]*"><span class="n"><a id="t(\d+)"', page)))
    partial = set(map(int, re.findall(r'<p class="par[^"]*"><span class="n"><a id="t(\d+)"', page)))
    assert node.body[0].lineno in missed  # the dead neuron's `h = s` never ran
    assert node.lineno in partial and "was never true" in page


def _write_bad(tmp_path: Path, kind: str) -> Path:
    if kind == "wrong width":
        np.save(tmp_path / "bad.npy", np.zeros((5, 63)))
    elif kind == "nan rows":
        x = np.zeros((5, 64))
        x[3, 7] = np.nan
        np.save(tmp_path / "bad.npy", x)
    elif kind == "empty file":
        (tmp_path / "bad.npy").write_bytes(b"")
    elif kind == "no rows":
        np.save(tmp_path / "bad.npy", np.zeros((0, 64)))
    return tmp_path / "bad.npy"


@pytest.mark.parametrize("kind", ["wrong width", "nan rows", "empty file", "no rows"])
def test_bad_data_is_refused_and_nothing_is_written(kind, tmp_path):
    data = _write_bad(tmp_path, kind)
    before = sorted(p.name for p in tmp_path.iterdir())
    result = CliRunner().invoke(
        main, ["coverage", str(DIGITS), "--data", str(data), "--html", str(tmp_path / "h"),
               "--json", str(tmp_path / "r.json")],
    )
    assert result.exit_code == 2
    assert result.output.startswith("templater: error: ") and result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.parametrize("program", ["not templater's", "numba", "table"])
def test_programs_coverage_cannot_map_are_refused(program, tmp_path):
    path = tmp_path / "program.py"
    if program == "not templater's":
        path.write_text('"""A module."""\n\ndef score(x):\n    return 1.0\n')
    elif program == "numba":
        path = Path("generated/digits/digits_numba.py")
    else:
        path.write_text(templater.compile(templater.load(DIGITS), "python", "table"))
    result = CliRunner().invoke(main, ["coverage", str(path), "--data", "random",
                                       "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("templater: error: ")
    assert not (tmp_path / "r.json").exists()


def test_a_program_file_is_covered_like_its_model(tmp_path):
    runner = CliRunner()
    by_model = runner.invoke(main, ["coverage", str(DIGITS), "--data", "random"])
    by_program = runner.invoke(
        main, ["coverage", "generated/digits/digits_python.py", "--data", "random"]
    )
    assert by_model.exit_code == by_program.exit_code == 0
    layers = [line for line in by_model.output.splitlines() if line.startswith("  ")]
    assert layers == [line for line in by_program.output.splitlines() if line.startswith("  ")]


@pytest.mark.parametrize("extra", [[], ["--input-range", "0", "1"]])
def test_annotated_program_has_the_same_ast(extra, tmp_path):
    runner = CliRunner()
    plain, annotated = tmp_path / "plain.py", tmp_path / "annotated.py"
    data = _digits_npy(tmp_path)
    args = ["compile", str(DIGITS), *extra]
    assert runner.invoke(main, [*args, "-o", str(plain)]).exit_code == 0
    result = runner.invoke(main, [*args, "--annotate", data, "-o", str(annotated)])
    assert result.exit_code == 0, result.output
    a, b = plain.read_text(), annotated.read_text()
    assert ast.dump(ast.parse(a)) == ast.dump(ast.parse(b))
    assert a.count("\n") == b.count("\n")
    net = templater.load(DIGITS)
    x = np.load(data)
    counts = (net.normalization.apply(x) @ net.layers[0].weights + net.layers[0].bias > 0).sum(0)
    notes = re.findall(r"if l1_s(\d+) > 0\.0:  # active on (\d+) of (\d+) rows", b)
    assert notes and all(int(n) == len(x) for _, _, n in notes)
    assert all(int(k) == counts[int(j)] for j, k, _ in notes)


@pytest.mark.parametrize("kind", ["wrong width", "nan rows", "empty file"])
def test_annotate_with_bad_data_writes_nothing(kind, tmp_path):
    data = _write_bad(tmp_path, kind)
    out = tmp_path / "annotated.py"
    result = CliRunner().invoke(
        main, ["compile", str(DIGITS), "--annotate", str(data), "-o", str(out)]
    )
    assert result.exit_code == 2 and result.output.startswith("templater: error: ")
    assert not out.exists()


def test_annotating_a_numba_program_reaches_its_unrolled_tail(tmp_path):
    rng = np.random.default_rng(2)
    net = templater.Network(
        input_size=5,
        layers=(templater.Dense(rng.normal(size=(5, 6)), rng.normal(size=6), "relu"),
                templater.Dense(rng.normal(size=(6, 1)), np.zeros(1), "identity")),
        head=templater.Head("binary", threshold=0.0),
    )
    net.save(tmp_path / "m.npz")
    out = tmp_path / "m.py"
    result = CliRunner().invoke(main, ["compile", str(tmp_path / "m.npz"), "--target", "numba",
                                       "--annotate", "random", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "annotated 6 neuron(s)" in result.output
    plain = templater.compile(net, "numba")
    assert ast.dump(ast.parse(plain)) == ast.dump(ast.parse(out.read_text()))


def test_html_never_replaces_a_folder_of_other_files(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep me")
    result = CliRunner().invoke(
        main, ["coverage", str(DIGITS), "--data", "random", "--rows", "10", "--html", str(folder)]
    )
    assert result.exit_code == 2 and "not a coverage report" in result.output
    assert [p.name for p in folder.iterdir()] == ["mine.txt"]
    again = tmp_path / "html"
    for _ in range(2):  # a second run replaces the first report
        ok = CliRunner().invoke(main, ["coverage", str(DIGITS), "--data", "random", "--rows",
                                       "10", "--html", str(again)])
        assert ok.exit_code == 0, ok.output
    assert (again / "index.html").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
