"""The command line: a thin click layer that parses arguments and calls the Python API."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from templater.errors import TemplaterError


class _Group(click.Group):
    """Turns TemplaterError into a one-line message and exit status 2.

    TEMPLATER_DEBUG=1 shows the traceback instead.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except TemplaterError as exc:
            if os.environ.get("TEMPLATER_DEBUG"):
                raise
            click.echo(f"templater: error: {exc}", err=True)
            sys.exit(2)


@click.group(cls=_Group)
@click.version_option(package_name="templater")
def main() -> None:
    """Compile trained networks into literal Python and Numba programs."""


# Commands are added below, one section per feature; each only parses and calls the API.


# -- compile and regenerate (issue 2) ---------------------------------------------------------
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
def compile_command(
    model: str, target: str, layout: str, dtype: str, output: str | None
) -> None:
    """Compile MODEL (.npz or .onnx) into a program."""
    from templater.compiler import compile as compile_network
    from templater.fileio import write_atomic
    from templater.importers import load_any

    source = compile_network(load_any(model), target, layout, dtype=dtype)
    if output:
        write_atomic(output, source)
        click.echo(f"wrote {output} ({source.count(chr(10)):,} lines)", err=True)
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


# -- training (issue 3): train, compare ----------------------------------------------------------
def _train_progress(label: str, total: int) -> tuple[Any, Any]:
    """A click progress bar showing loss and validation accuracy; returns (bar, callback)."""
    state = {"text": ""}
    bar = click.progressbar(
        length=total, label=label, file=sys.stderr, item_show_func=lambda _: state["text"]
    )
    seen = {"n": 0}

    def callback(done: int, _total: int, loss: float, accuracy: float) -> None:
        state["text"] = f"loss {loss:.4f}  val acc {accuracy:.3f}"
        bar.update(max(0, done - seen["n"]))
        seen["n"] = done

    return bar, callback


@main.command()
@click.option("--arch", default="625-16-1", show_default=True, help="Layer sizes, input first.")
@click.option(
    "--search", "strategy", type=click.Choice(["sgd", "random", "hillclimb"]), default="sgd",
    show_default=True, help="How to fill the template's weights.",
)
@click.option("--epochs", type=int, default=None, help="SGD passes over the training set [60].")
@click.option("--budget", type=int, default=None, help="Programs (weight settings) to evaluate.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--bootstrap", type=int, default=None, help="Rounds of mined false positives [6].")
@click.option(
    "--ensemble", type=int, default=None,
    help="Networks searched from different seeds and merged into one (their mean score) [1].",
)
@click.option(
    "--mirror/--no-mirror", default=None,
    help="Score each window as the mean of the network's scores of it and of its mirror image.",
)
@click.option("--photo-windows", type=int, default=None, help="Random windows per photo [150].")
@click.option(
    "--validation-photo-folds", type=int, default=None,
    help="Folds of face-free photos the detector threshold is set on, not trained on [1].",
)
@click.option(
    "--fp-per-megapixel", type=float, default=None,
    help="The threshold rule's budget of boxes per megapixel of face-free photos [1.0].",
)
@click.option(
    "--threshold-rule", type=click.Choice(["validation", "unseen", "faces"]), default=None,
    help="The budget holds on the validation photos, or is the expected rate on unseen ones "
    "(one box fewer on the validation photos), or: no budget, a share of the validation faces "
    "scores above the threshold (--face-recall) [validation].",
)
@click.option(
    "--face-recall", type=float, default=None,
    help="With --threshold-rule faces: the share of validation faces above the threshold [0.4].",
)
@click.option("--folds", type=int, default=None, help="Instead: K-fold accuracy by source image.")
@click.option(
    "--final", is_flag=True,
    help="Train on the test fold too (the shipped detector): only validation metrics.",
)
@click.option("-o", "--output", type=click.Path(), default="model.npz", show_default=True)
def train(
    arch: str, strategy: str, epochs: int | None, budget: int | None, seed: int,
    bootstrap: int | None, ensemble: int | None, mirror: bool | None, photo_windows: int | None,
    validation_photo_folds: int | None, fp_per_megapixel: float | None,
    threshold_rule: str | None, face_recall: float | None, folds: int | None, final: bool,
    output: str,
) -> None:
    """Train the face / non-face template on scikit-image's faces and photos."""
    from templater import train as training

    recipe = {  # options not given keep TrainConfig's defaults (the shipped recipe)
        "bootstrap": bootstrap, "ensemble": ensemble, "mirror": mirror,
        "photo_windows": photo_windows,
        "validation_photo_folds": validation_photo_folds, "fp_per_megapixel": fp_per_megapixel,
        "threshold_rule": threshold_rule, "face_recall": face_recall,
    }
    config = training.TrainConfig(
        arch=arch, search=strategy, epochs=epochs, budget=budget, seed=seed, final=final,
        **{key: value for key, value in recipe.items() if value is not None},
    )
    training.validate(config)
    if folds is not None:
        def fold_done(k: int, acc: float) -> None:
            click.echo(f"fold {k}: accuracy {acc:.4f}", err=True)

        result = training.cross_validate(config, folds, progress=fold_done)
        for key in ("accuracy", "accuracy_lfw", "roc_auc"):
            s = result[key]
            click.echo(
                f"{key}: {s['mean']:.4f} ± {s['std']:.4f} "
                f"(min {s['min']:.4f}, max {s['max']:.4f})"
            )
        d = result["detector"]
        click.echo(
            f"detector on the test folds ({d['faces']} lfw faces, {d['megapixels']:.2f} MP of "
            f"face-free photos): {d['face_recall']:.2f} of the faces found, "
            f"{d['boxes_per_megapixel']:.2f} boxes per MP; at the threshold leaving 1 box per MP, "
            f"{d['face_recall_at_1_box_per_megapixel']:.2f} of the faces found"
        )
        click.echo("with --threshold-rule faces --face-recall R: faces found / boxes per MP")
        for recall, v in d["face_recall_sweep"].items():
            click.echo(
                f"  R = {recall:<4} {v['face_recall']:.2f} / {v['boxes_per_megapixel']:.2f}"
            )
        return
    training.check_writable(output)
    bar, callback = _train_progress("training", 1)
    with bar:
        def progress(done: int, total: int, loss: float, accuracy: float) -> None:
            bar.length = total
            callback(done, total, loss, accuracy)

        result = training.train(config, progress)
    paths = training.write_outputs(result, output)
    split = "test" if result.metrics["test"] else "validation"
    m = result.metrics[split]
    click.echo(
        f"{split} accuracy {m['accuracy']:.4f} (lfw windows {m['accuracy_lfw']:.4f}), "
        f"ROC AUC {m['roc_auc']:.4f}, threshold {result.network.head.threshold:.4f}, "
        f"{result.metrics['seconds']:.1f} s"
    )
    for path in paths.values():
        click.echo(f"wrote {path}")


@main.command()
@click.option("--budget", type=int, default=2000, show_default=True, help="Programs per strategy.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", type=click.Path(), default="compare.png", show_default=True)
def compare(budget: int, seed: int, output: str) -> None:
    """SGD vs random search vs hill climbing on one template at one evaluation budget."""
    from templater import compare as comparison

    result = comparison.compare(budget=budget, seed=seed, output=output)
    click.echo(comparison.table(result))
    click.echo(f"wrote {output}")


# -- detection (issue 4): detect, demo -----------------------------------------------------------
@main.command()
@click.argument("detector", metavar="MODEL_OR_PROGRAM", type=click.Path(dir_okay=False))
@click.argument("image", type=click.Path(dir_okay=False))
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the picture with boxes (PNG)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the boxes as JSON.")
@click.option("--threshold", type=float, default=None, help="Score a window must exceed [model's].")
@click.option("--stride", type=int, default=None, help="Window step in pixels [2].")
def detect(
    detector: str, image: str, output: str | None, as_json: bool, threshold: float | None,
    stride: int | None,
) -> None:
    """Find faces in IMAGE (PNG, JPEG or .npy) with a face program (.py) or model.

    Colour is converted to gray (0.2125 R + 0.7154 G + 0.0721 B; transparency composited on
    white first). Boxes are (row, col, size, score) in image pixels, best first.
    """
    from templater.detect import detect as run_detect
    from templater.detect import format_boxes

    found = run_detect(detector, image, threshold=threshold, stride=stride, output=output)
    if as_json:
        click.echo(found.to_json())
    else:
        click.echo(format_boxes(found.boxes))
        click.echo(
            f"{len(found.boxes)} face(s) in {found.shape[0]}x{found.shape[1]} pixels, "
            f"{found.seconds:.3f} s ({found.detector.kind} {found.detector.path})",
            err=True,
        )
    if output:
        click.echo(f"wrote {output}", err=True)


@main.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default="astronaut_faces.png",
    show_default=True, help="The picture with the boxes.",
)
@click.option("--retrain", is_flag=True, help="Train the face model (not the committed one).")
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Timed runs of each scan (the median is shown).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def demo(output: str, retrain: bool, repeats: int, as_json: bool) -> None:
    """The main job: committed face model -> Numba program -> faces in the astronaut photo."""
    from templater.demo import report, run_demo

    def log(message: str) -> None:
        click.echo(message, err=True)

    progress = None
    bar: Any = contextlib.nullcontext()
    if retrain:  # training is the long part: show its progress
        bar, callback = _train_progress("training", 1)

        def progress(done: int, total: int, loss: float, accuracy: float) -> None:
            bar.length = total
            callback(done, total, loss, accuracy)

    with bar:
        result = run_demo(output, retrain=retrain, repeats=repeats, log=log, progress=progress)
    click.echo(result.to_json() if as_json else report(result))


# -- diff and verify (issue 6) ----------------------------------------------------------------
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

    from templater.diff import load_model
    from templater.verify import verify

    report = verify(
        load_model(model), program, target, layout, data, count, seed, model, dtype=dtype
    )
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, sort_keys=True))
    else:
        for line in report.lines():
            click.echo(line)
    sys.exit(0 if report.passed else 1)


# -- import (issue 7) ------------------------------------------------------------------------------
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
    from templater.errors import UsageError
    from templater.importers import import_file

    if not output.lower().endswith(".npz"):
        raise UsageError(f"{output}: the output must be a .npz model file")
    net = import_file(model, tensor=tensor, head=head, threshold=threshold)
    net.save(output)
    click.echo(f"wrote {output}: {net.architecture}, {net.head.kind} head")


# -- bench (issue 5) ------------------------------------------------------------------------------
@main.command("bench")
@click.option("--quick", is_flag=True, help="Fewer repeats and smaller batches (a fast run).")
@click.option(
    "--arch", "archs", multiple=True, help="A network to measure (repeatable) [issue 5's four]."
)
@click.option(
    "--layout", type=click.Choice(["auto", "unrolled", "table"]), default="auto",
    show_default=True,
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-scan", is_flag=True, help="Skip the astronaut scan.")
@click.option("--no-onnx", is_flag=True, help="Skip the onnxruntime baselines.")
@click.option("--sweep", is_flag=True, help="Also compile 1k to 1M parameter networks (slow).")
@click.option(
    "--dtype", "dtypes", multiple=True, type=click.Choice(["float64", "float32"]),
    help="Program float type(s) to measure, each beside the same baselines (repeatable) [float64].",
)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write results here.")
def bench_command(
    quick: bool, archs: tuple[str, ...], layout: str, seed: int, no_scan: bool, no_onnx: bool,
    sweep: bool, dtypes: tuple[str, ...], json_path: str | None,
) -> None:
    """Measure compile cost, call rates and scan speed against numpy, numba and onnxruntime."""
    from templater import bench
    from templater.fileio import write_atomic

    config = bench.BenchConfig(
        archs=archs or bench.ARCHS, quick=quick, layout=layout, seed=seed, scan=not no_scan,
        onnx=not no_onnx, sweep=sweep, dtypes=dtypes or ("float64",),
    )
    results = bench.run(config, progress=lambda text: click.echo(text, err=True))
    click.echo(bench.table(results))
    click.echo("\nIssue 5's targets in this run:\n")
    click.echo(bench.targets(results))
    if json_path:
        write_atomic(json_path, results.to_json() + "\n")
        click.echo(f"wrote {json_path}", err=True)


# -- train-conv: the own convolutional face detector -----------------------------------------------
@main.command("train-conv")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Folder for model.npz and own_numba.py (float32).")
@click.option("--steps", type=click.IntRange(1), default=None,
              help="Adam steps before bootstrapping [the recipe's].")
@click.option("--rounds", type=click.IntRange(0), default=None,
              help="Bootstrapping rounds [the recipe's].")
@click.option("--round-steps", type=click.IntRange(1), default=None,
              help="Adam steps after each round [the recipe's].")
def train_conv_command(
    seed: int, output: str, steps: int | None, rounds: int | None, round_steps: int | None
) -> None:
    """Train the own convolutional face detector by search and compile it (float32)."""
    from templater import own_train
    changes = {k: v for k, v in (("steps", steps), ("rounds", rounds),
                                 ("round_steps", round_steps)) if v is not None}
    recipe = own_train.with_changes(own_train.ConvRecipe(), **changes)
    det, _ = own_train.train(recipe, seed, progress=lambda text: click.echo(text, err=True))
    for path in own_train.write_outputs(det, output):
        click.echo(f"wrote {path}", err=True)
    click.echo(f"threshold {det.threshold!r}")
