"""How much of the first layer a staged scan computes.

See docs/decisions.md, "Scans stop early, exactly".

    python docs/stage_work.py

For the committed face model (its 8 scales) and the bench's random 625-32-1 and 625-128-1
networks (scales 1, 0.75, 0.5), over the astronaut's windows at stride 2: after each stage's
check, the share of blocks of 4 neighbouring windows still running, and the first layer's
multiply-adds done as a share of a full scan. Computed in numpy from the reference (real numbers,
not the program's floats, so a bound within rounding of the threshold may land either side); it
counts the blocks the way `_level_scores` cuts them (GROUP = 32 windows, then blocks of 4).
"""

import numpy as np
from skimage import data

from templater import modelfile
from templater.bench import random_network
from templater.data.faces import gray
from templater.lower import BLOCK, scan_stages
from templater.scan import DEFAULT_SCALES, pyramid_level, windows

GROUP = 32


def stage_work(net, image, scales):
    """(share of the first layer's multiply-adds done, share of blocks running after each check,
    the checks' column boundaries)."""
    hidden, output = net.layers
    stages = scan_stages(net, ("table", "unrolled"))
    order = np.array(stages.order)
    v = output.weights[order, 0]
    checks = list(range(stages.bound_from, len(v) + 1, stages.step))
    done = 0.0
    blocks = 0
    running = np.zeros(len(checks))
    for s in scales:
        positions, pixels = windows(pyramid_level(image, s), 2)
        x = net.normalization.apply(pixels)
        terms = np.maximum(x @ hidden.weights[:, order] + hidden.bias[order], 0.0) * v
        n_cols = len(np.unique(positions[:, 1]))
        col = np.arange(n_cols)
        block_of = col // GROUP * (GROUP // BLOCK) + col % GROUP // BLOCK  # within a window row
        row, c = np.divmod(np.arange(len(x)), n_cols)
        ids = row * (block_of.max() + 1) + block_of[c]
        alive = np.ones(ids.max() + 1, dtype=bool)
        blocks += len(alive)
        done += len(alive) * checks[0]
        for k, end in enumerate(checks):
            bound = output.bias[0] + terms[:, :end].sum(axis=1)
            above = np.zeros_like(alive)
            np.logical_or.at(above, ids, bound > net.head.threshold)
            alive &= above
            running[k] += alive.sum()
            if k + 1 < len(checks):
                done += alive.sum() * stages.step
    return done / (blocks * len(v)), running / blocks, checks


def main():
    image = gray(data.astronaut())
    nets = [
        ("face 625-16-1", modelfile.load("generated/face/model.npz"), DEFAULT_SCALES),
        ("625-32-1", random_network("625-32-1", 0, image), (1.0, 0.75, 0.5)),
        ("625-128-1", random_network("625-128-1", 0, image), (1.0, 0.75, 0.5)),
    ]
    for name, net, scales in nets:
        work, running, checks = stage_work(net, image, scales)
        after = ", ".join(f"{c}: {r:.3f}" for c, r in zip(checks, running, strict=True))
        print(f"{name}: first-layer work {work:.2f} of a full scan; blocks running after ({after})")


if __name__ == "__main__":
    main()
