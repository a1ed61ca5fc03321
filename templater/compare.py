"""The comparison: sgd, random and hillclimb on one template, one split, one evaluation budget."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from templater.errors import UsageError
from templater.network import Normalization
from templater.search import STRATEGIES, search
from templater.search.objective import Objective, Template
from templater.train import DEFAULT_ARCH, TrainConfig, check_writable, parse_arch, prepare


def compare(
    budget: int = 2000,
    seed: int = 0,
    arch: str = DEFAULT_ARCH,
    output: str | os.PathLike | None = None,
    strategies: tuple[str, ...] = STRATEGIES,
) -> dict[str, Any]:
    """Each strategy from the same start, for `budget` programs evaluated; optionally the PNG.

    Returns per strategy its curve, final and best validation error (score > 0 is a face).
    No bootstrapping, so every strategy sees the same data.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise UsageError(f"--budget must be a positive integer, got {budget!r}")
    if output is not None:
        check_writable(output)
    sizes = parse_arch(arch)
    train, val, _ = prepare(TrainConfig(arch=arch, seed=seed))
    norm = Normalization("window")
    objective = Objective(
        Template.mlp(sizes), norm.apply(train.x), train.y, norm.apply(val.x), val.y
    )
    start = objective.template.init(np.random.default_rng([seed, 3]))
    out: dict[str, Any] = {"budget": budget, "arch": arch, "seed": seed, "strategies": {}}
    for name in strategies:
        result = search(objective, name, budget, np.random.default_rng([seed, 4]), theta0=start)
        errors = [e for _, e in result.curve]
        out["strategies"][name] = {
            "curve": list(result.curve),
            "final_val_error": errors[-1],
            "best_val_error": min(errors),
            "train_loss": result.train_loss,
        }
    if output is not None:
        from templater import plots
        from templater.fileio import write_atomic

        png = plots.curves_png(
            {k: v["curve"] for k, v in out["strategies"].items()},
            f"{arch}: validation error at equal evaluation budgets",
        )
        write_atomic(output, png)
    return out


def table(result: dict[str, Any]) -> str:
    """A Markdown table of the comparison."""
    lines = [
        f"| search ({result['arch']}, {result['budget']} programs) | final val error "
        "| best val error | train loss |",
        "|---|---|---|---|",
    ]
    for name, r in result["strategies"].items():
        lines.append(
            f"| {name} | {r['final_val_error']:.4f} | {r['best_val_error']:.4f} "
            f"| {r['train_loss']:.4f} |"
        )
    return "\n".join(lines)
