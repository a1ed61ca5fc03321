"""Naming: every identifier a generated program uses, chosen here from structure alone.

Lowering, the program forms and the emitter take their names from these functions; diff and
verify never guess a name, they read the names a program lists in its LAYERS constant.
"""

from __future__ import annotations

# The functions of a generated program (the templates define them under these names).
KERNEL = "_kernel"  # one input vector
TAIL = "_tail"  # the trailing unrolled layers, shared by a Numba program's kernels
ENTRY_POINT = "score_batch"  # every program has it

# Vectors of the input and its normalised copy, and the output of a multi-output kernel.
INPUT = "x"
NORMALIZED = "xn"
OUTPUT = "out"
# The constant that describes a program's layers as data.
LAYERS = "LAYERS"

# Loop variables: inputs, neurons (units), rows of a block.
INPUT_INDEX = "i"
UNIT_INDEX = "j"
ROW_INDEX = "b"
BLOCK_ROW = "r"  # the first row of a block pass


def neuron(layer: int, kind: str, index: int, width: int) -> str:
    """`l1_s03`: layer 1, pre-activation sum (s), activation (h), temporary (e) or probability
    (p) of neuron 3, zero-padded to the layer's width."""
    digits = len(str(max(width - 1, 0)))
    return f"l{layer}_{kind}{index:0{digits}d}"


def vector(layer: int, kind: str = "h") -> str:
    """`l1_h`: a table layer's activations (h) or sums (s); `l1_v`: an unrolled layer's
    outputs gathered into a vector for the table layer after it."""
    return f"l{layer}_{kind}"


def weights_table(layer: int) -> str:
    return f"L{layer}_W"


def bias_table(layer: int) -> str:
    return f"L{layer}_B"


def softmax_max(layer: int) -> str:
    return f"l{layer}_max"


def softmax_total(layer: int) -> str:
    return f"l{layer}_total"


def lane_input(k: int) -> str:
    """The k-th input an input-major pass adds (one load serves every neuron)."""
    return f"xi{k}"


def lane_weight(k: int) -> str:
    """The k-th weight of a block pass (one load serves every row)."""
    return f"w{k}"


def block_input(row: int, k: int) -> str:
    """Row `row`'s k-th input in a block pass."""
    return f"x{row}_{k}"


def stat_lane(prefix: str, k: int) -> str:
    """`t3`, `d3`: lane 3 of the window normalisation's sums and deltas."""
    return f"{prefix}{k}"


def offset(var: str, k: int) -> str:
    """A loop variable plus a literal offset, as an index: `i`, `i + 3`."""
    return var if k == 0 else f"{var} + {k}"
