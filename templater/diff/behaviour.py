"""The behavioural diff: both sides run on the same data; decisions that flip, score changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from templater.diff.sides import Side
from templater.errors import UsageError
from templater.programs import import_program
from templater.verify.inputs import Inputs
from templater.verify.programs import program_outputs

# Flipped windows drawn in the PNG at most (the largest score change first).
MAX_PICTURED = 48

@dataclass(frozen=True, eq=False)
class Behaviour:
    data: str
    n: int
    scored_by: tuple[str, str]
    kind: str  # binary, multiclass or regression
    flips: np.ndarray  # indices whose decision differs, largest score change first
    to_positive: int  # binary: False -> True
    to_negative: int
    transitions: dict[str, int]  # multiclass: "a->b" -> count
    delta: np.ndarray  # B - A per input (binary/regression) or largest |change| per input
    scores: tuple[np.ndarray, np.ndarray]
    x: np.ndarray = field(repr=False)  # the rows run

    def distribution(self) -> dict[str, Any]:
        d = self.delta
        mag = np.abs(d)
        counts, edges = np.histogram(d, bins=10) if d.size else (np.zeros(0), np.zeros(0))
        return {
            "changed": int(np.sum(d != 0.0)),
            "mean": float(d.mean()) if d.size else 0.0,
            "mean_abs": float(mag.mean()) if d.size else 0.0,
            "abs_quantiles": {
                q: float(np.quantile(mag, float(q) / 100)) if d.size else 0.0
                for q in ("50", "90", "99", "100")
            },
            "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        }


def behaviour(a: Side, b: Side, inputs: Inputs) -> Behaviour:
    sa, by_a = _outputs(a, inputs.x)
    sb, by_b = _outputs(b, inputs.x)
    if sa.shape != sb.shape:
        raise UsageError(
            f"{a.path} gives {sa.shape[1:] or 1} outputs but {b.path} gives {sb.shape[1:] or 1}; "
            "their behaviour cannot be compared"
        )
    transitions: dict[str, int] = {}
    up = down = 0
    if a.head == "binary" and b.head == "binary":
        da, db = sa > a.threshold, sb > b.threshold
        flips = np.flatnonzero(da != db)
        up, down = int(np.sum(~da & db)), int(np.sum(da & ~db))
        delta = sb - sa
        kind = "binary"
    elif sa.ndim == 2:
        pa, pb = np.argmax(sa, axis=1), np.argmax(sb, axis=1)
        flips = np.flatnonzero(pa != pb)
        for i in flips:
            key = f"{pa[i]}->{pb[i]}"
            transitions[key] = transitions.get(key, 0) + 1
        transitions = dict(sorted(transitions.items()))
        diff = sb - sa
        delta = diff[np.arange(len(diff)), np.argmax(np.abs(diff), axis=1)]
        kind = "multiclass"
    else:
        flips = np.zeros(0, dtype=np.int64)
        delta = sb - sa
        kind = "regression"
    order = np.argsort(-np.abs(delta[flips]), kind="stable")
    return Behaviour(
        inputs.source, len(inputs.x), (by_a, by_b), kind, flips[order], up, down,
        transitions, delta, (sa, sb), inputs.x,
    )


def _outputs(side: Side, x: np.ndarray) -> tuple[np.ndarray, str]:
    """(n,) scores or (n, k) outputs: a program is run, a model file by its exact reference."""
    if side.net is None:
        return program_outputs(import_program(side.path), x), "the program"
    out = np.asarray(side.net.forward(x, exact=True), dtype=np.float64)
    return (out[:, 0] if out.shape[1] == 1 else out), "the numpy reference of the model"


def flips_png(a: Side, b: Side, result: Behaviour) -> bytes:
    """The flipped windows (largest score change first), each titled with both scores."""
    from templater import plots

    shape = a.input_shape or b.input_shape
    if not shape or len(shape) != 2:
        raise UsageError(
            "a picture of the flipped windows needs a 2-D input shape; these models have "
            f"{shape}"
        )
    picked = result.flips[:MAX_PICTURED]
    sa, sb = result.scores
    titles = []
    for i in picked:
        if result.kind == "multiclass":
            titles.append(f"#{i}: {np.argmax(sa[i])}->{np.argmax(sb[i])}")
        else:
            titles.append(f"#{i}\nA {sa[i]:.3g} B {sb[i]:.3g}")
    shown = f"{len(picked)} of {len(result.flips)}" if len(result.flips) > len(picked) else (
        f"{len(picked)}"
    )
    title = f"decisions that flip from {a.path.name} to {b.path.name} ({shown})"
    return plots.windows_png(result.x[picked], tuple(shape), titles, title)


