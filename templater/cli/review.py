"""Commands that review programs: diff, verify, neuron coverage and pruning."""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import click

from templater.cli.group import main

# -- diff and verify -------------------------------------------------------------------------------
_DATA_HELP = (
    "faces (the face test split), random (uniform in [0, 1]), none, or FILE.npy of rows "
    "[default: faces when the model takes 625 inputs, else random]"
)


@main.command("diff")
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--target", type=click.Choice(["python", "numba"]), default=None,
              help="Compile model files for this target [default: the program's, else python].")
@click.option("--layout", type=click.Choice(["auto", "unrolled", "table"]), default="auto",
              show_default=True, help="Layout for model files (a program's own is reused).")
@click.option("--data", default="auto", help=_DATA_HELP)
@click.option("--png", type=click.Path(dir_okay=False), help="Write the flipped windows here.")
@click.option("--summary", is_flag=True, help="Leave out the unified diff of the programs.")
@click.option("--context", type=click.IntRange(0), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def diff_command(
    a: str, b: str, target: str | None, layout: str, data: str, png: str | None, summary: bool,
    context: int, as_json: bool,
) -> None:
    """Review a model change as a program change: A and B are model files (.npz, .onnx) or
    generated programs (.py) of one target.

    Prints the unified diff of the two programs, a structural summary (per neuron: weights
    changed, max and mean absolute change; neurons added, removed, renumbered or pruned;
    threshold and normalisation) and the behavioural diff on data (decisions that flip, score
    changes). A program's weights are recovered by parsing it (never by running it); its
    behaviour by importing it; a model file's behaviour is its numpy reference.

    Exit status: 0 when the programs are identical, 1 when they differ, 2 on error.
    """
    import json

    from templater.diff import diff, write_png
    from templater.fileio import check_output

    check_output(png, [a, b, data], (".png",))
    conv = _conv_diff(a, b)
    if conv is not None:
        click.echo(json.dumps(conv.to_json(), indent=2, sort_keys=True) if as_json
                   else "\n".join(conv.summary_lines()))
        sys.exit(0 if conv.identical else 1)
    result = diff(a, b, target, layout, None if data == "none" else data, context)
    drawn = write_png(result, png) if png else 0
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2, sort_keys=True))
    else:
        if not summary and result.unified:
            click.echo(result.unified, nl=not result.unified.endswith("\n"))
        for line in result.summary_lines():
            click.echo(line)
        if png:
            click.echo(f"wrote {png} ({drawn} windows)" if drawn else f"no flips: no {png}")
    sys.exit(0 if result.identical else 1)


def _conv_diff(a: str, b: str) -> Any:
    """The diff of two convolutional model files, or None when they are not both that."""
    from pathlib import Path

    if Path(a).suffix == ".py" or Path(b).suffix == ".py":
        return None
    from templater.convnet import ConvNetwork
    from templater.diff.conv import diff_conv
    from templater.errors import UsageError
    from templater.models import load_model

    na, nb = load_model(a), load_model(b)
    if isinstance(na, ConvNetwork) != isinstance(nb, ConvNetwork):
        raise UsageError(f"{a} and {b}: one is convolutional, the other not")
    return diff_conv(na, nb, a, b) if isinstance(na, ConvNetwork) else None


@main.command("verify")
@click.argument("model", type=click.Path(dir_okay=False))
@click.argument("program", type=click.Path(dir_okay=False), required=False)
@click.option("--target", type=click.Choice(["python", "numba"]), default="python",
              show_default=True, help="Without PROGRAM: compile for this target.")
@click.option("--layout", type=click.Choice(["auto", "unrolled", "table"]), default="auto",
              show_default=True, help="Without PROGRAM: compile with this layout.")
@click.option("--data", default="auto", help=_DATA_HELP.replace("none, ", ""))
@click.option("--dtype", type=click.Choice(["float64", "float32"]), default="float64",
              show_default=True, help="Without PROGRAM: compile in this precision (numba).")
@click.option("--count", type=click.IntRange(1), default=1000, show_default=True,
              help="How many random inputs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def verify_command(
    model: str, program: str | None, target: str, layout: str, dtype: str, data: str,
    count: int, seed: int, as_json: bool,
) -> None:
    """Run PROGRAM (or MODEL freshly compiled) on data and compare it with MODEL's numpy
    reference: max absolute error, max ULP distance, decision agreement, and the inputs whose
    reference score lies within the tolerance of the threshold.

    The tolerance is exact (0 ULP) for piecewise-linear activations; sigmoid, tanh, softmax
    and the Python target's window normalisation get a stated bound (templater.verify).
    Exit status: 0 when the program agrees, 1 on any disagreement beyond it, 2 on error.
    """
    import json

    from templater.convnet import ConvNetwork
    from templater.models import load_model
    from templater.verify import verify

    net = load_model(model)
    if isinstance(net, ConvNetwork):
        from templater.verify.conv import verify_conv

        report = verify_conv(net, program, target, layout, min(count, 200), seed, model, dtype)
    else:
        report = verify(net, program, target, layout, data, count, seed, model, dtype=dtype)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(0 if report.passed else 1)


# -- neuron coverage and pruning ----------------------------------------------------------------
def _rows_progress(label: str) -> tuple[Any, Any]:
    """A progress bar on a terminal, else a line per tenth; returns (context, callback)."""
    if sys.stderr.isatty():
        bar = click.progressbar(length=1, label=label, file=sys.stderr)
        seen = {"n": 0}

        def on_tty(done: int, total: int) -> None:
            bar.length = total
            bar.update(done - seen["n"])
            seen["n"] = done

        return bar, on_tty
    shown = {"tenth": -1}

    def plain(done: int, total: int) -> None:
        tenth = done * 10 // total
        if tenth != shown["tenth"]:
            shown["tenth"] = tenth
            click.echo(f"{label}: {done}/{total} rows", err=True)

    return contextlib.nullcontext(), plain


@main.command("coverage")
@click.argument("subject", metavar="MODEL_OR_PROGRAM", type=click.Path(dir_okay=False))
@click.option("--data", default="auto",
              help="faces (the bundled face windows), random (uniform in [0, 1]) or FILE.npy "
              "[default: faces when the model takes 625 inputs, else random].")
@click.option("--rows", type=click.IntRange(1), default=1000, show_default=True,
              help="Trace at most this many rows (a seeded random sample of larger data).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--html", type=click.Path(file_okay=False), help="Write coverage.py's HTML here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report.")
def coverage_command(
    subject: str, data: str, rows: int, seed: int, html: str | None, json_path: str | None
) -> None:
    """Run the pure-Python program of MODEL_OR_PROGRAM over data under coverage.py (branch
    coverage) and report per layer the neurons never active (dead on this data) and always
    active (linear on this data). Every ReLU is an if/else, so a dead neuron is a branch the
    data never takes; --html shows them as lines never run."""
    import json

    from templater.fileio import write_atomic
    from templater.neuron_coverage import load_rows, measure, subject_of

    program = subject_of(subject)
    spec = data
    if data == "auto":
        spec = "faces" if program.n_inputs == 625 else "random"
    chosen = load_rows(spec, program.n_inputs, rows, seed)
    context, progress = _rows_progress("coverage")
    with context:
        report = measure(program, chosen.x, chosen.label, chosen.total, html, progress)
    for line in report.lines():
        click.echo(line)
    if html:
        click.echo(f"wrote {html}/index.html", err=True)
    if json_path:
        write_atomic(json_path, json.dumps(report.to_json(), indent=2, sort_keys=True) + "\n")
        click.echo(f"wrote {json_path}", err=True)


@main.command("prune")
@click.argument("model", type=click.Path(dir_okay=False))
@click.option("--data", required=True,
              help="Prune on: faces (the training windows; judged on the face test split), "
              "random or FILE.npy (30% of its rows held out to judge on).")
@click.option("--held-out", default=None, help="Judge on this data instead (faces, random, "
              "FILE.npy).")
@click.option("--max-flips", type=click.IntRange(0), required=True,
              help="Refuse to write when more held-out decisions than this flip.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
@click.option("--seed", type=int, default=0, show_default=True)
def prune_command(
    model: str, data: str, held_out: str | None, max_flips: int, output: str, seed: int
) -> None:
    """Remove the neurons never active on --data (data-driven, not exact), report what that
    changes on held-out data with the numbers `templater diff` prints, and write the pruned
    model to OUTPUT only when at most --max-flips decisions flip (else exit 1)."""
    from pathlib import Path

    from templater.errors import UsageError
    from templater.prune import prune, write

    if Path(output).resolve() == Path(model).resolve():
        raise UsageError(f"-o {output} is the input model; write the pruned model elsewhere")
    result = prune(model, data, max_flips, held_out, seed=seed)
    for line in result.lines():
        click.echo(line)
    if not result.allowed:
        click.echo(f"templater: {result.flips} decision(s) flip on the held-out data, more than "
                   f"--max-flips {max_flips}: {output} not written", err=True)
        sys.exit(1)
    write(result, model, output)
    click.echo(f"wrote {output} ({result.removed} neuron(s) removed)", err=True)
