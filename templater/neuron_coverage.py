"""Neuron coverage: every ReLU in a pure-Python program is an `if`, so coverage.py's branch
coverage over a data set shows which neurons the data never turns on (dead on this data) and
which it never turns off (linear on this data).

The program runs under coverage.py itself (branch=True); each neuron's `if` is found in the
program's syntax tree by the name lowering gave its pre-activation (`l1_s03`, see
`lower.neuron_name`), and for a model file that list is checked against the compiled IR. A
neuron is active on a row when the `if` jumps into its body, inactive when it jumps to `else`.

Dense layers have one `if` per neuron. A layer kind with channels plugs in by giving
`neuron_names` one name per channel (its `if`, or a per-channel pre-activation tested in a
loop): the report is per (layer, unit) and does not care what a unit is.
"""

from __future__ import annotations

import ast
import os
import shutil
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from templater.bounds import RELU_LIKE
from templater.errors import MalformedModelError, TemplaterError, UnsupportedError, UsageError
from templater.lower import neuron_name
from templater.network import Network
from templater.program import Compare, Const, If, Program, Var, walk

# Rows traced at most by default: the face model runs ~3,000 rows a second under coverage.
DEFAULT_MAX_ROWS = 1000
# The functions holding the program's body: the kernel, and a numba program's unrolled tail.
KERNELS = ("_kernel", "_tail")
ROWS_PER_CALL = 50  # rows per score_batch call (the progress bar moves between calls)

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Branch:
    """One neuron's `if` in the program: its line, and the first line of each branch."""

    layer: int  # 1-based, as in the program's names
    neuron: int
    name: str  # the pre-activation it tests
    line: int
    on_line: int  # first statement of the body: the neuron is active
    off_line: int  # first statement of the else: inactive


@dataclass(frozen=True)
class LayerCoverage:
    layer: int
    width: int
    activation: str
    mapped: tuple[int, ...]  # neurons with an `if` in the program
    dead: tuple[int, ...]  # never active on the data
    always: tuple[int, ...]  # never inactive on the data

    @property
    def not_in_program(self) -> tuple[int, ...]:
        """Neurons with no `if` in the program: dropped (no path to the output, or proven
        never active) or proven always active by `compile --input-range`."""
        return tuple(sorted(set(range(self.width)) - set(self.mapped)))

    def to_json(self) -> dict[str, Any]:
        return {
            "layer": self.layer, "width": self.width, "activation": self.activation,
            "dead": list(self.dead), "always_active": list(self.always),
            "dead_share": len(self.dead) / self.width,
            "always_active_share": len(self.always) / self.width,
            "not_in_program": list(self.not_in_program),
        }


@dataclass(frozen=True, eq=False)
class CoverageReport:
    subject: str
    data: str
    rows_used: int
    rows_total: int
    layers: tuple[LayerCoverage, ...]
    seconds: float
    branches: tuple[Branch, ...] = field(repr=False, default=())

    def lines(self) -> list[str]:
        sampled = (
            f"{self.rows_used} of {self.rows_total} rows (a random sample)"
            if self.rows_used < self.rows_total else f"all {self.rows_used} rows"
        )
        out = [
            f"coverage of {self.subject} on {self.data}: {sampled}, traced in "
            f"{self.seconds:.1f} s"
        ]
        for lc in self.layers:
            w = lc.width
            out.append(
                f"  layer {lc.layer} ({lc.activation}, {w} neurons): "
                f"{len(lc.dead)} dead on this data ({len(lc.dead) / w:.1%}), "
                f"{len(lc.always)} always active ({len(lc.always) / w:.1%})"
            )
            if lc.dead:
                out.append(f"    dead: {_names(lc.layer, lc.dead, w)}")
            if lc.always:
                out.append(f"    always active: {_names(lc.layer, lc.always, w)}")
            if lc.not_in_program:
                out.append(
                    f"    no if in the program (dropped by the compiler, or proven always "
                    f"active by its bounds): {_names(lc.layer, lc.not_in_program, w)}"
                )
        if not self.layers:
            out.append("  no ReLU-like layer: no neuron is a branch")
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "data": self.data, "rows_used": self.rows_used,
            "rows_total": self.rows_total, "seconds": round(self.seconds, 3),
            "layers": [lc.to_json() for lc in self.layers],
        }


def _names(layer: int, units: tuple[int, ...], width: int) -> str:
    return ", ".join(neuron_name(layer, "h", j, width) for j in units)


# -- which names are neurons ------------------------------------------------------------------


@dataclass(frozen=True)
class LayerInfo:
    """What the mapping needs of a layer: its width, activation and layout."""

    width: int
    activation: str
    layout: str = "unrolled"


def neuron_names(layers: tuple[LayerInfo, ...]) -> dict[str, tuple[int, int]]:
    """`l1_s03` -> (1, 3) for every neuron of a ReLU-like layer (the names lowering uses)."""
    names = {}
    for number, info in enumerate(layers, start=1):
        if info.activation.split("(")[0] not in RELU_LIKE:
            continue
        if info.layout != "unrolled":
            raise UsageError(
                f"layer {number} is written as a table (a loop over its neurons), so its "
                "neurons share one `if`; coverage needs the layer unrolled: compile with "
                "--target python --layout unrolled"
            )
        for j in range(info.width):
            names[neuron_name(number, "s", j, info.width)] = (number, j)
    return names


def ir_neurons(program: Program, names: dict[str, tuple[int, int]]) -> tuple[str, ...]:
    """The tested names of the IR's neuron `if`s, in program order."""
    return tuple(
        s.test.left.name for s in walk(program.body)
        if isinstance(s, If) and _is_neuron_test(s.test) and s.test.left.name in names
    )


def _is_neuron_test(test: Compare) -> bool:
    return (
        test.op == ">" and isinstance(test.left, Var)
        and isinstance(test.right, Const) and test.right.value == 0.0
    )


def branches(tree: ast.Module, names: dict[str, tuple[int, int]]) -> tuple[Branch, ...]:
    """Each neuron's `if s > 0.0:` in the program body, in program order (a numba program
    writes its trailing unrolled layers once, in `_tail`)."""
    bodies = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name in KERNELS]
    if not any(n.name == "_kernel" for n in bodies):
        raise MalformedModelError("not a templater program: it has no _kernel function")
    found = []
    for node in (found_if for body in bodies for found_if in _ifs(body.body)):
        test = node.test
        if (
            isinstance(test, ast.Compare) and isinstance(test.left, ast.Name)
            and len(test.ops) == 1 and isinstance(test.ops[0], ast.Gt)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == 0.0 and test.left.id in names and node.orelse
        ):
            layer, unit = names[test.left.id]
            found.append(
                Branch(layer, unit, test.left.id, node.lineno, node.body[0].lineno,
                       node.orelse[0].lineno)
            )
    return tuple(found)


def _ifs(stmts: list[ast.stmt]):
    """Every `if` under `stmts`, depth first in source order (the order of `program.walk`)."""
    for stmt in stmts:
        if isinstance(stmt, ast.If):
            yield stmt
            yield from _ifs(stmt.body)
            yield from _ifs(stmt.orelse)
        elif isinstance(stmt, (ast.For, ast.While)):
            yield from _ifs(stmt.body)


# -- the subject: a model compiled here, or a pure-Python program file -------------------------


@dataclass(frozen=True, eq=False)
class Subject:
    label: str
    source: str
    stem: str  # the program's file name in the HTML report
    layers: tuple[LayerInfo, ...]
    n_inputs: int
    expected: tuple[str, ...] | None  # the IR's neuron `if`s, when compiled here


def subject_of(path: str | os.PathLike) -> Subject:
    """A model file (compiled to pure Python, every layer unrolled) or a pure-Python program."""
    path = Path(path)
    if path.suffix == ".py":
        return _program_subject(path)
    from templater.diff import load_model

    return model_subject(load_model(path), str(path), path.stem)


def model_subject(net: Network, label: str, stem: str = "model") -> Subject:
    from templater.compiler import compile as compile_network
    from templater.compiler import program_of

    layers = tuple(LayerInfo(d.n_outputs, d.activation.name) for d in net.layers)
    program = program_of(net, "python", "unrolled")
    source = compile_network(net, "python", "unrolled")
    expected = ir_neurons(program, neuron_names(layers))
    return Subject(label, source, f"{stem}_python", layers, net.input_size, expected)


def _program_subject(path: Path) -> Subject:
    from templater.diff import read_side

    side = read_side(path, "python")  # refuses a file that is not a templater program
    if side.target != "python":
        raise UsageError(
            f"{path} is a {side.target} program; coverage traces the pure-Python program "
            "(compile with --target python, or give the model file)"
        )
    layers = tuple(LayerInfo(v.width, v.activation, v.layout) for v in side.layers)
    return Subject(str(path), side.text, path.stem, layers, side.n_inputs, None)


# -- running under coverage.py ---------------------------------------------------------------


def measure(
    subject: Subject,
    rows: np.ndarray,
    data_label: str,
    rows_total: int,
    html: str | os.PathLike | None = None,
    progress: Progress | None = None,
) -> CoverageReport:
    """Run the subject's program on `rows` under coverage.py and map its arcs to neurons."""
    try:
        import coverage
    except ImportError as exc:
        raise UnsupportedError(
            "neuron coverage runs the program under coverage.py, which is not installed: "
            "pip install 'templater[coverage]'"
        ) from exc

    if html is not None:
        _check_html_folder(Path(html))
    names = neuron_names(subject.layers)
    tree = ast.parse(subject.source)
    found = branches(tree, names)
    if subject.expected is not None and tuple(b.name for b in found) != subject.expected:
        raise TemplaterError("internal: the program's neuron ifs do not match its IR")
    with tempfile.TemporaryDirectory(prefix="templater-coverage-") as folder:
        path = Path(folder) / f"{subject.stem}.py"
        path.write_text(subject.source, encoding="utf-8")
        cov = coverage.Coverage(
            data_file=None, branch=True, include=[str(path)], config_file=False
        )
        start = time.perf_counter()
        cov.start()
        try:
            _run(path, subject.source, rows, progress)
        finally:
            cov.stop()
        seconds = time.perf_counter() - start
        arcs = set(cov.get_data().arcs(str(path)) or ())
        if html is not None:
            _write_html(cov, path, Path(html), subject.label)
    layers = _layers(subject.layers, found, arcs)
    return CoverageReport(
        subject.label, data_label, len(rows), rows_total, layers, seconds, found
    )


def _run(path: Path, source: str, rows: np.ndarray, progress: Progress | None) -> None:
    """Import the program from `path` (a fresh module, not registered anywhere) and score."""
    module = types.ModuleType(path.stem)
    module.__file__ = str(path)
    exec(compile(source, str(path), "exec"), module.__dict__)
    total = len(rows)
    for start in range(0, total, ROWS_PER_CALL):
        module.score_batch(rows[start : start + ROWS_PER_CALL].tolist())
        if progress is not None:
            progress(min(start + ROWS_PER_CALL, total), total)


def _layers(
    layers: tuple[LayerInfo, ...], found: tuple[Branch, ...], arcs: set[tuple[int, int]]
) -> tuple[LayerCoverage, ...]:
    out = []
    for number, info in enumerate(layers, start=1):
        if info.activation.split("(")[0] not in RELU_LIKE:
            continue
        mine = [b for b in found if b.layer == number]
        on = {b.neuron for b in mine if (b.line, b.on_line) in arcs}
        off = {b.neuron for b in mine if (b.line, b.off_line) in arcs}
        mapped = tuple(b.neuron for b in mine)
        out.append(
            LayerCoverage(
                number, info.width, info.activation, mapped,
                tuple(j for j in mapped if j not in on),
                tuple(j for j in mapped if j not in off),
            )
        )
    return tuple(out)


def _check_html_folder(directory: Path) -> None:
    """Refuse a folder that holds anything but an earlier coverage report (never lose files)."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--html {directory}: exists and is not a folder")
    if directory.is_dir() and any(directory.iterdir()) and not (directory / "status.json").exists():
        raise UsageError(
            f"--html {directory}: the folder holds files that are not a coverage report; "
            "give a new or empty folder"
        )


def _write_html(cov: Any, program: Path, directory: Path, label: str) -> None:
    """coverage.py's own HTML report, built beside `directory` and then moved into place."""
    parent = directory.parent if str(directory.parent) else Path(".")
    try:
        building = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    except OSError as exc:
        raise TemplaterError(f"cannot write {directory}: {exc.strerror or exc}") from exc
    try:
        cov.html_report(
            morfs=[str(program)], directory=str(building),
            title=f"templater neuron coverage: {label}",
        )
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=parent))
            os.replace(directory, old / "report")
            os.replace(building, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(building, directory)
    except BaseException as exc:
        shutil.rmtree(building, ignore_errors=True)
        if isinstance(exc, OSError):
            raise TemplaterError(f"cannot write {directory}: {exc.strerror or exc}") from exc
        raise


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Rows:
    x: np.ndarray  # the rows to run (after sampling)
    label: str
    total: int  # rows before sampling


def load_rows(
    spec: str, n_inputs: int, max_rows: int = DEFAULT_MAX_ROWS, seed: int = 0
) -> Rows:
    """`faces` (every bundled face window), `random` (max_rows uniform in [0, 1]) or FILE.npy;
    more than `max_rows` rows are sampled (without replacement, seeded, in file order)."""
    from templater.verify import FACE_WIDTH, load_inputs

    if max_rows < 1:
        raise UsageError(f"--rows must be positive, not {max_rows}")
    if spec == "faces":
        if n_inputs != FACE_WIDTH:
            raise UsageError(
                f"the face windows have {FACE_WIDTH} pixels but the model takes {n_inputs} "
                "inputs; give --data FILE.npy or --data random"
            )
        from templater.data import faces

        x, label = faces.base_windows().x, "the bundled face windows"
    elif spec == "random":
        inputs = load_inputs("random", n_inputs, count=max_rows, seed=seed)
        x, label = inputs.x, inputs.source
    else:
        x, label = load_inputs(spec, n_inputs).x, str(spec)
    total = len(x)
    if total > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(total, max_rows, replace=False))
        x = x[keep]
    return Rows(np.asarray(x, dtype=np.float64), label, total)


def coverage_of(
    model_or_program: str | os.PathLike,
    data: str = "faces",
    max_rows: int = DEFAULT_MAX_ROWS,
    html: str | os.PathLike | None = None,
    progress: Progress | None = None,
    seed: int = 0,
) -> CoverageReport:
    """The whole command: load, sample, trace, map (see the module docs)."""
    subject = subject_of(model_or_program)
    rows = load_rows(data, subject.n_inputs, max_rows, seed)
    return measure(subject, rows.x, rows.label, rows.total, html, progress)


# -- the annotated program --------------------------------------------------------------------


def activity(net: Network, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per layer, how many rows of `x` make each neuron's pre-activation > 0 (the `if` taken),
    computed by the numpy reference in the programs' summation order."""
    from dataclasses import replace as copy_with

    from templater.network import Activation

    h = net.normalization.apply(np.asarray(x, dtype=np.float64))
    counts = []
    for layer in net.layers:
        pre = copy_with(layer, activation=Activation("identity")).apply(h)
        counts.append(np.sum(pre > 0.0, axis=0))
        h = layer.activation.apply(pre)
    return tuple(counts)


def annotate(source: str, net: Network, x: np.ndarray, label: str) -> tuple[str, int]:
    """`source` with a comment after each neuron's `if`: how often it was active on `x`.

    Only comments are added (the program's AST is unchanged) and no line moves, so coverage
    reports and tracebacks of the plain program still point at the same lines. Returns the
    text and how many neurons were annotated (a layer written as a table has one `if` for all
    its neurons and gets none)."""
    layers = tuple(LayerInfo(d.n_outputs, d.activation.name) for d in net.layers)
    names = neuron_names(layers)
    counts = activity(net, x)
    lines = source.split("\n")
    rows = len(x)
    found = branches(ast.parse(source), names)
    for b in found:
        active = int(counts[b.layer - 1][b.neuron])
        note = f"active on {active} of {rows} rows ({active / rows:.1%})"
        if active == 0:
            note += ": dead on this data"
        elif active == rows:
            note += ": always active on this data"
        lines[b.line - 1] += f"  # {note}"
    # the label (a user's file name) only ever inside repr(): one line, no code
    header = f"  # neuron activity on {label!r}: {rows} rows, counted by the numpy reference"
    lines[_docstring_end(source) - 1] += header
    return "\n".join(lines), len(found)


def _docstring_end(source: str) -> int:
    """The line the module docstring ends on (its closing quotes)."""
    first = ast.parse(source).body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)):
        raise MalformedModelError("not a templater program: it has no docstring header")
    return first.end_lineno or 1
