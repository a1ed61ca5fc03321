"""Commands that train: the dense face template, the search comparison, the own conv detector."""

from __future__ import annotations

import sys
from typing import Any

import click

from templater.cli.group import main


# -- training: train, compare ----------------------------------------------------------------------
def train_progress(label: str, total: int) -> tuple[Any, Any]:
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
    bar, callback = train_progress("training", 1)
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
