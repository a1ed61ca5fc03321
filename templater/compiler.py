"""The compiler facade: compile(network, target, layout) -> source text."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from templater import naming, scan_defaults
from templater.conv_compiler import compile_conv
from templater.convnet import ConvNetwork
from templater.emit import Emitter, layers_constant
from templater.errors import TooLargeError
from templater.forms import BLOCK, Stages, block_program, scan_stages, split_tail, staged_block
from templater.literals import literal, round_float32
from templater.lower import choose_layouts, lower
from templater.network import Dense, Network, Normalization
from templater.passes import DEFAULT_PASSES, run_passes
from templater.program import Program
from templater.render import KEY_PENDING, render, with_program_key
from templater.targets import Target, get_target

# find_faces refuses a pyramid level above this many pixels (a 8k x 8k level is 512 MB).
MAX_LEVEL_PIXELS = 1 << 26
# Importing a pure-Python program costs about 2.1 kB of memory a parameter when unrolled, 1.2 kB
# as tables (docs/reliability.md): this keeps the import under about 1 GB in either layout.
MAX_PYTHON_PARAMETERS = 400_000


def compile(  # shadows the builtin on purpose: templater.compile
    net: Network,
    target: str = "python",
    layout: str | tuple[str, ...] = "auto",
    passes: tuple[str, ...] = DEFAULT_PASSES,
    dtype: str = "float64",
) -> str:
    """The source of a program computing `net` (see the module docs of the generated file).

    `dtype="float32"` (numba only): every weight, bias, threshold and parameter written as its
    nearest float32 and all arithmetic in float32; it computes `net.forward(x, dtype=np.float32)`.
    A ConvNetwork compiles through templater.conv_compiler (one kernel per layer).
    """
    if isinstance(net, ConvNetwork):
        return compile_conv(net, target, layout if isinstance(layout, str) else "auto", dtype)
    tgt, layouts, stages, program = _lowered(net, target, layout, passes, dtype)
    return render_program(net, program, tgt, layouts, stages)


def program_of(
    net: Network, target: str = "python", layout: str = "auto", dtype: str = "float64"
) -> Program:
    """The optimised IR that `compile` would render (for diff, verify and inspection)."""
    return _lowered(net, target, layout, DEFAULT_PASSES, dtype)[3]


def _lowered(
    net: Network,
    target: str,
    layout: str | tuple[str, ...],
    passes: tuple[str, ...],
    dtype: str,
) -> tuple[Target, tuple[str, ...], Stages | None, Program]:
    """The target, the layouts, the scan stages (if any) and the optimised IR of `net`."""
    tgt = get_target(target, dtype)
    if tgt.name == "python" and net.n_parameters > MAX_PYTHON_PARAMETERS:
        raise TooLargeError(
            f"model has {net.n_parameters:,} parameters; the pure-Python target is limited to "
            f"{MAX_PYTHON_PARAMETERS:,} (its import needs about 2 kB a parameter): use numba"
        )
    layouts = choose_layouts(net, layout, tgt.unroll_budget)
    emitted = rounded(net, tgt.dtype)
    stages = _stages(emitted, tgt, layouts)
    program = run_passes(lower(emitted, layouts, stages and stages.order), passes)
    return tgt, layouts, stages, program


def _stages(net: Network, target: Target, layouts: tuple[str, ...]) -> Stages | None:
    """The stages of a face scanner's staged kernel, when the target and network allow them."""
    if not target.staged_scan or not _has_scanner(net):
        return None
    return scan_stages(net, layouts)


def _has_scanner(net: Network) -> bool:
    """A binary network over square 2-D windows gets find_faces (templates/scanner_*.j2)."""
    shape = net.input_shape
    return (
        net.head.kind == "binary" and shape is not None and len(shape) == 2 and shape[0] == shape[1]
    )


def rounded(net: Network, dtype: str) -> Network:
    """`net` with every weight, bias and parameter rounded to `dtype` (float64: `net` itself).

    Lowering the rounded network lets the passes see weights that float32 turns into zeros."""
    if dtype == "float64":
        return net
    r = round_float32
    layers = tuple(
        Dense(
            weights=layer.weights.astype(np.float32),
            bias=layer.bias.astype(np.float32),
            activation=replace(
                layer.activation,
                **{
                    k: r(getattr(layer.activation, k))
                    for k in ("alpha", "beta")
                    if getattr(layer.activation, k) is not None
                },
            ),
            name=layer.name,
        )
        for layer in net.layers
    )
    norm = Normalization(net.normalization.kind, r(net.normalization.eps))
    head = net.head
    if head.kind == "binary":
        head = replace(head, threshold=r(head.threshold))
    return net.with_layers(layers, normalization=norm, head=head)


def render_program(
    net: Network,
    program: Program,
    target: Target,
    layouts: tuple[str, ...],
    stages: Stages | None = None,
) -> str:
    emitter = Emitter(target)
    tables = "\n".join(line for t in program.tables for line in (*emitter.table(t), ""))
    scalar = program.returns_scalar
    tail: tuple = ()
    tail_vector = ""
    if target.shared_tail:  # two kernels share the unrolled layers through one function
        program, tail, tail_vector = split_tail(program)
    block_allocs, block_body = block_program(program, BLOCK) if target.block_kernel else ((), ())
    head = net.head
    f = target.dtype
    context = {
        "digest": net.digest(),
        "digest_repr": repr(net.digest()),
        "architecture": net.architecture,
        "target_title": target.title,
        "target_note": target.note,
        "layouts": ", ".join(layouts),
        "imports": target.imports,
        "program_key_repr": repr(KEY_PENDING),
        "layers": "\n".join(layers_constant(tuple(i.literal() for i in program.layers))),
        # Text from the model file reaches the program only through repr().
        "name_repr": repr(net.name),
        "layer_names_repr": repr(tuple(layer.name for layer in net.layers)),
        "labels_repr": repr(head.labels) if head.labels is not None else "",
        "n_inputs": net.input_size,
        "n_outputs": net.n_outputs,
        "input_shape_repr": repr(net.input_shape),
        "normalization_repr": repr(net.normalization.kind),
        "binary": head.kind == "binary",
        "multiclass": head.kind == "multiclass",
        "threshold": literal(head.threshold, target.dtype) if head.kind == "binary" else "",
        "tables": tables.rstrip("\n"),
        "uses": program.uses,
        "scalar_output": scalar,
        "kernel_params": "x" if scalar else "x, out",
        "kernel_signature": f"{f}({f}[::1])" if scalar else f"boolean({f}[::1], {f}[::1])",
        # the float type of the numba program's arrays; float64 keeps its files as they were
        "dtype": f,
        "dtype_repr": repr(f),
        "dtype_arg": "" if f == "float64" else f", dtype=np.{f}",
        "zero": target.const.format(value="0.0"),
        "body": "\n".join(emitter.statements(program.body, 1)),
        "tail_body": "\n".join(emitter.statements(tail, 1)) if tail else "",
        "tail_params": tail_vector if scalar else f"{tail_vector}, out",
        "block": BLOCK,
        "block_allocs": "\n".join(emitter.statements(block_allocs, 1)),
        "block_body": "\n".join(emitter.statements(block_body, 2)),
        **_stage_context(stages, block_body, emitter),
        **_scanner_context(net),
    }
    return with_program_key(render(target.template, context))


def _stage_context(
    stages: Stages | None, block_body: tuple, emitter: Emitter
) -> dict[str, object]:
    """find_faces's staged kernel (see forms.scan_stages): the positive units in one loop of
    known length, then the others `stages.step` at a time."""
    if stages is None:
        return {"stages": False}
    start, columns, score = staged_block(block_body)

    def lines(stmts: tuple, depth: int) -> str:
        return "\n".join(emitter.statements(stmts, depth))

    return {
        "stages": True,
        "stage_units": stages.step,
        "bound_from": stages.bound_from,
        "staged_units": repr(stages.order),
        "stage_vector": naming.vector(1),
        "stage_width": len(stages.order),
        "scan_start": lines(start, 2),
        "first_stage": lines(columns(0, stages.bound_from), 2),
        "next_stages": lines(columns("lo", f"lo + {stages.step}"), 3),
        "stage_score": lines((score,), 3),
        "stage_score_next": lines((score,), 4),
    }


def _scanner_context(net: Network) -> dict[str, object]:
    """The scanner's settings, for a network that gets one (see `_has_scanner`)."""
    if not _has_scanner(net):
        return {"scanner": False}
    shape = net.input_shape
    return {
        "scanner": True,
        "window": shape[0],
        "default_scales": "(" + ", ".join(literal(s) for s in scan_defaults.DEFAULT_SCALES) + ")",
        "default_stride": str(int(scan_defaults.DEFAULT_STRIDE)),
        "default_overlap": literal(scan_defaults.DEFAULT_OVERLAP),
        "max_level_pixels": f"{MAX_LEVEL_PIXELS:_}",
    }
