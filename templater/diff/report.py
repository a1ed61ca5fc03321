"""The whole diff as a record: its JSON form and its summary for a terminal."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from templater.diff.behaviour import Behaviour
from templater.diff.sides import Side
from templater.diff.structure import NeuronChange, Structure


@dataclass(frozen=True, eq=False)
class Diff:
    a: Side
    b: Side
    unified: str
    structure: Structure
    behaviour: Behaviour | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def identical(self) -> bool:
        return self.a.text == self.b.text

    def to_json(self) -> dict[str, Any]:
        def side(s: Side) -> dict[str, Any]:
            return {"path": str(s.path), "kind": s.kind, "target": s.target,
                    "digest": s.digest, "architecture": s.architecture}

        st = self.structure
        out: dict[str, Any] = {
            "identical": self.identical,
            "a": side(self.a),
            "b": side(self.b),
            "structure": {
                "architecture": list(st.architecture),
                "threshold": list(st.threshold),
                "normalization": list(st.normalization),
                "head": list(st.head),
                "layers": [
                    {"layer": lc.layer, "a": lc.a, "b": lc.b, "unchanged": lc.unchanged,
                     "neurons": [n.__dict__ for n in lc.neurons]}
                    for lc in st.layers
                ],
            },
            "behaviour": None,
            "notes": list(self.notes),
            "unified_diff": self.unified,
        }
        if self.behaviour is not None:
            bh = self.behaviour
            out["behaviour"] = {
                "data": bh.data,
                "inputs": bh.n,
                "scored_by": list(bh.scored_by),
                "kind": bh.kind,
                "flips": len(bh.flips),
                "to_positive": bh.to_positive,
                "to_negative": bh.to_negative,
                "transitions": bh.transitions,
                "flipped_inputs": bh.flips.tolist(),
                "score_change": bh.distribution(),
            }
        return out

    def summary_lines(self, show: int = 20) -> list[str]:
        st = self.structure
        out = [f"structure: {st.architecture[0]} -> {st.architecture[1]}"
               if st.architecture[0] != st.architecture[1]
               else f"structure: {st.architecture[0]}"]
        for lc in st.layers:
            heading = lc.a if lc.a == lc.b else f"{lc.a}  ->  {lc.b}"
            out.append(f"  layer {lc.layer} ({heading}): {len(lc.neurons)} neuron(s) differ, "
                       f"{lc.unchanged} unchanged")
            for n in lc.neurons[:show]:
                out.append("    " + _neuron_text(n))
            if len(lc.neurons) > show:
                out.append(f"    ... and {len(lc.neurons) - show} more")
        for label, (x, y) in (("threshold", st.threshold), ("normalization", st.normalization),
                              ("head", st.head)):
            if x != y:
                out.append(f"  {label}: {x!r} -> {y!r}")
        bh = self.behaviour
        if bh is not None:
            out.append(f"behaviour on {bh.data}:")
            out.append(f"  scored by {bh.scored_by[0]} (A) and {bh.scored_by[1]} (B)")
            if bh.kind == "binary":
                out.append(f"  {len(bh.flips)} decision(s) flip: {bh.to_positive} to positive "
                           f"(score > threshold), {bh.to_negative} to negative")
            elif bh.kind == "multiclass":
                moves = ", ".join(f"{k}: {v}" for k, v in bh.transitions.items()) or "none"
                out.append(f"  {len(bh.flips)} prediction(s) change class ({moves})")
            d = bh.distribution()
            q = d["abs_quantiles"]
            out.append(
                f"  score change B - A: {d['changed']} of {bh.n} inputs change; mean "
                f"{d['mean']:+.3g}, |change| median {q['50']:.3g}, 90% {q['90']:.3g}, "
                f"99% {q['99']:.3g}, max {q['100']:.3g}"
            )
            if len(bh.flips):
                sa, sb = bh.scores
                listed = ", ".join(
                    f"#{i} ({_score(sa[i])} -> {_score(sb[i])})" for i in bh.flips[:10]
                )
                more = f", ... {len(bh.flips) - 10} more" if len(bh.flips) > 10 else ""
                out.append(f"  flipped (largest change first): {listed}{more}")
        out.extend(self.notes)
        out.append("identical programs" if self.identical else "the programs differ")
        return out


def _neuron_text(n: NeuronChange) -> str:
    if n.status == "changed":
        name = n.a if n.a == n.b else f"{n.a} (now {n.b})"
        return (f"{name}: {n.weights_changed} weight(s) changed, max |change| "
                f"{n.max_abs_change:.3g}, mean |change| {n.mean_abs_change:.3g}")
    if n.status == "added":
        return f"{n.b}: added"
    if n.status == "renumbered":
        return f"{n.a}: renumbered {n.b}, weights unchanged"
    if n.status == "pruned":
        return f"{n.a}: pruned (no longer reaches the output; the program drops it)"
    if n.status == "revived":
        return f"{n.b}: revived (reaches the output again)"
    return f"{n.a}: {n.status}"


def _score(v: Any) -> str:
    arr = np.asarray(v)
    return f"{float(arr):.4g}" if arr.ndim == 0 else f"class {int(np.argmax(arr))}"


