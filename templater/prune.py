"""Data-driven pruning: remove the neurons a data set never turns on, then measure what that
changes on data held out from the pruning, with `templater diff`'s own behavioural diff.

This is not an exact pass (templater.bounds has those): a neuron never active on the pruning
data may be active on other inputs, so the pruned model can decide differently. On the pruning
rows themselves every output is unchanged (a removed neuron's output was 0.0 on each of them).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from templater.errors import UsageError
from templater.network import Dense, Network
from templater.neuron_coverage import activity

# Activations whose inactive branch outputs exactly 0.0: only their neurons can be removed.
ZERO_WHEN_OFF = ("relu", "step")
HELD_OUT_SHARE = 0.3  # of the rows of a .npy or random --data, when no --held-out is given


class PruneRefused(UsageError):
    """The pruned model changes more held-out decisions than allowed."""


@dataclass(frozen=True, eq=False)
class Split:
    prune_x: np.ndarray
    prune_label: str
    held_x: np.ndarray
    held_label: str
    images: bool


def split_data(
    data: str, held_out: str | None, n_inputs: int, seed: int = 0
) -> Split:
    """Rows to prune on and rows to judge on, never the same rows.

    `faces`: prune on the training windows (augmented, as trained), judge on the face test
    split (what `templater diff --data faces` runs). Otherwise `--held-out` names the judging
    data, or HELD_OUT_SHARE of the rows are set aside (seeded)."""
    from templater.verify import FACE_WIDTH, face_test_split, load_inputs

    if data == "faces":
        if n_inputs != FACE_WIDTH:
            raise UsageError(
                f"the face windows have {FACE_WIDTH} pixels but the model takes {n_inputs} "
                "inputs; give --data FILE.npy or --data random"
            )
        from templater.train import TrainConfig, prepare

        train = np.asarray(prepare(TrainConfig())[0].x, dtype=np.float64)
        if held_out is None:
            test = face_test_split()
            return Split(train, f"the face training windows ({len(train)})", test,
                         f"the face test split ({len(test)} windows)", True)
        rows = load_inputs(held_out, n_inputs, seed=seed + 1)
        return Split(train, f"the face training windows ({len(train)})", rows.x, rows.source,
                     rows.images)
    rows = load_inputs(data, n_inputs, seed=seed)
    if held_out is not None:
        other = load_inputs(held_out, n_inputs, seed=seed + 1)
        return Split(rows.x, rows.source, other.x, other.source, other.images)
    n = len(rows.x)
    held = round(n * HELD_OUT_SHARE)
    if held < 1 or held >= n:
        raise UsageError(
            f"{rows.source}: {n} row(s) cannot be split into pruning and held-out rows; "
            "give more rows or --held-out"
        )
    order = np.random.default_rng(seed).permutation(n)
    keep, judge = np.sort(order[held:]), np.sort(order[:held])
    return Split(rows.x[keep], f"{rows.source}, {len(keep)} rows", rows.x[judge],
                 f"{rows.source}, {held} held-out rows (seed {seed})", False)


@dataclass(frozen=True)
class Removal:
    layer: int  # 1-based
    neurons: tuple[int, ...]
    width: int


def dead_on(net: Network, x: np.ndarray) -> tuple[Removal, ...]:
    """Per hidden layer whose inactive output is 0.0: the neurons never active on `x`."""
    counts = activity(net, x)
    out = []
    for number, (layer, count) in enumerate(zip(net.layers[:-1], counts, strict=False), 1):
        if layer.activation.name in ZERO_WHEN_OFF:
            dead = tuple(int(j) for j in np.flatnonzero(count == 0))
            out.append(Removal(number, dead, layer.n_outputs))
    return tuple(out)


def without(net: Network, removals: tuple[Removal, ...], label: str) -> Network:
    """`net` with the removed neurons' columns and their outgoing weights gone. A layer whose
    every neuron is dead keeps its first one (a layer cannot be empty; it still outputs 0.0)."""
    drop = {r.layer: set(r.neurons) for r in removals}
    layers = list(net.layers)
    for number in sorted(drop):
        k = number - 1
        keep = [j for j in range(layers[k].n_outputs) if j not in drop[number]] or [0]
        cur, nxt = layers[k], layers[k + 1]
        layers[k] = Dense(cur.weights[:, keep], cur.bias[keep], cur.activation, cur.name)
        layers[k + 1] = Dense(nxt.weights[keep, :], nxt.bias, nxt.activation, nxt.name)
    metadata = dict(net.metadata)
    metadata["pruned_on_data"] = label
    return net.with_layers(tuple(layers), metadata=metadata)


@dataclass(frozen=True, eq=False)
class PruneResult:
    removals: tuple[Removal, ...]
    split: Split
    pruned: Network
    diff: object  # templater.diff.Diff, with its behaviour on the held-out rows
    flips: int
    max_flips: int

    @property
    def removed(self) -> int:
        return sum(len(r.neurons) for r in self.removals)

    @property
    def allowed(self) -> bool:
        return self.flips <= self.max_flips

    def lines(self) -> list[str]:
        out = [f"pruned on {self.split.prune_label}: data-driven, not exact"]
        for r in self.removals:
            out.append(f"  layer {r.layer}: removed {len(r.neurons)} of {r.width} neurons "
                       f"never active ({', '.join(map(str, r.neurons)) or 'none'})")
        out.append(f"held out: {self.split.held_label}")
        out.extend(self.diff.summary_lines())
        return out


def prune(
    model: str | os.PathLike,
    data: str,
    max_flips: int,
    held_out: str | None = None,
    target: str = "python",
    seed: int = 0,
) -> PruneResult:
    """Prune `model` on `data` and diff it against the original on held-out rows (the numbers
    `templater diff` prints). Writes nothing; see `write`."""
    from templater import diff as diffing
    from templater.verify import Inputs

    if max_flips < 0:
        raise UsageError(f"--max-flips must be 0 or more, not {max_flips}")
    net = diffing.load_model(model)
    split = split_data(data, held_out, net.input_size, seed)
    removals = dead_on(net, split.prune_x)
    pruned = without(
        net, removals,
        f"neurons never active on {split.prune_label} removed; judged on {split.held_label}",
    )
    with tempfile.TemporaryDirectory(prefix="templater-prune-") as folder:
        path = Path(folder) / f"{Path(model).stem}.pruned.npz"
        pruned.save(path)
        result = diffing.diff(model, path, target, data=None)
        rows = Inputs(split.held_x, split.held_label, split.images)
        behaviour = diffing.behaviour(result.a, result.b, rows)
    full = diffing.Diff(result.a, result.b, result.unified, result.structure, behaviour)
    return PruneResult(removals, split, pruned, full, len(behaviour.flips), max_flips)


def write(result: PruneResult, model: str | os.PathLike, output: str | os.PathLike) -> None:
    """Save the pruned model, only when its flips are within the limit; never over MODEL."""
    if Path(output).resolve() == Path(model).resolve():
        raise UsageError(f"-o {output} is the input model; write the pruned model elsewhere")
    if not result.allowed:
        raise PruneRefused(
            f"{result.flips} decision(s) flip on the held-out data, more than --max-flips "
            f"{result.max_flips}: {output} not written"
        )
    result.pruned.save(output)
