"""Diffing: two models or programs compared as programs, as structure and as behaviour.

A and B are each a model file (.npz, .onnx: compiled here) or a generated program (.py: read as
text). Three views:

- the unified diff of the two program texts (stable names and one term per line keep it local);
- the structure (`structure`): per layer and neuron, the weights that changed (count, max and
  mean absolute change over the neuron's bias and incoming weights), neurons added, removed,
  renumbered or pruned (no path to the output: the program drops them), activation, threshold
  and normalisation changes. A program's weights are read back as data (`sides`: its LAYERS
  constant, its literal tables and sums, parsed with `ast`, never run);
- the behaviour on data (`behaviour`): decisions that flip each way, the distribution of score
  changes, and optionally a PNG of the flipped windows. Programs are run (imported); a model file
  is run by its numpy reference, which every program matches within `verify.tolerance_for`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from templater.diff.behaviour import MAX_PICTURED, Behaviour, behaviour, flips_png
from templater.diff.report import Diff
from templater.diff.sides import LayerView, Side, live_neurons, program_side, read_side
from templater.diff.structure import LayerChange, NeuronChange, Structure, structure
from templater.errors import UsageError
from templater.lower import LAYOUTS
from templater.models import load_model
from templater.verify.inputs import load_inputs
from templater.verify.programs import read_program

__all__ = [
    "MAX_PICTURED", "Behaviour", "Diff", "LayerChange", "LayerView", "NeuronChange", "Side",
    "Structure", "behaviour", "diff", "flips_png", "live_neurons", "load_model", "read_side",
    "structure", "write_png",
]


def diff(
    path_a: str | os.PathLike,
    path_b: str | os.PathLike,
    target: str | None = None,
    layout: str = "auto",
    data: str | os.PathLike | None = "auto",
    context: int = 3,
) -> Diff:
    """Compare A and B; `data=None` skips the behavioural diff.

    Programs must share a target and an input size. A model file is compiled for the other
    side's target (and, when depths match, its per-layer layouts), else for `target`
    (default python) with `layout`.
    """
    if layout not in LAYOUTS:
        raise UsageError(f"unknown layout {layout!r}; choose one of {', '.join(LAYOUTS)}")
    pa, pb = Path(path_a), Path(path_b)
    programs = {p: read_program(p) for p in (pa, pb) if p.suffix == ".py"}
    targets = {pf.target for pf in programs.values()}
    if len(targets) > 1:
        fa, fb = programs[pa], programs[pb]
        raise UsageError(
            f"{pa} is a {fa.target} program but {pb} is a {fb.target} program; diff programs "
            "of the same target (or give the model files)"
        )
    if targets and target is not None and target not in targets:
        raise UsageError(
            f"--target {target} does not match the {targets.pop()} program given; "
            "leave --target out or give model files"
        )
    chosen = target or (targets.pop() if targets else "python")
    other = next(iter(programs.values()), None)
    layouts: tuple[str, ...] | str = other.layouts if other is not None and other.layouts else (
        layout
    )
    a = program_side(programs[pa]) if pa in programs else read_side(pa, chosen, layouts)
    b = program_side(programs[pb]) if pb in programs else read_side(pb, chosen, layouts)
    if a.n_inputs != b.n_inputs:
        raise UsageError(
            f"{pa} takes {a.n_inputs} inputs but {pb} takes {b.n_inputs}; "
            "only programs of the same input size can be diffed"
        )
    unified = "".join(
        difflib.unified_diff(
            a.text.splitlines(keepends=True), b.text.splitlines(keepends=True),
            f"a/{pa.name}", f"b/{pb.name}", n=context,
        )
    )
    result = Diff(a, b, unified, structure(a, b))
    if data is None:
        return result
    inputs = load_inputs(data, a.n_inputs)
    return Diff(a, b, unified, result.structure, behaviour(a, b, inputs))


def write_png(result: Diff, path: str | os.PathLike) -> int:
    """Write the PNG of flipped windows; returns how many are drawn (0: nothing flips, no file)."""
    from templater.fileio import write_atomic

    if result.behaviour is None or not len(result.behaviour.flips):
        return 0
    write_atomic(path, flips_png(result.a, result.b, result.behaviour))
    return min(len(result.behaviour.flips), MAX_PICTURED)
