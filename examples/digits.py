"""Compile a scikit-learn digit classifier into a literal program, and check it.

    python examples/digits.py [--out DIR]

Trains an MLPClassifier (64-16-10, ReLU, softmax) on scikit-learn's 8x8 digits, converts it with
templater.from_sklearn, saves the model file, compiles it for both targets and checks that the
programs give the same probabilities as predict_proba and the same predictions as predict.
generated/digits/ holds the model this script made (`--out generated/digits`).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier

import templater


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("out/digits"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    digits = load_digits()
    x = digits.data / 16.0  # pixels in [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((16,), max_iter=300, random_state=0).fit(x_train, y_train)

    net = templater.from_sklearn(clf)
    net = net.with_layers(net.layers, name="digits 8x8, MLPClassifier(16)", input_shape=(8, 8))
    net.save(args.out / "model.npz")
    net = templater.load(args.out / "model.npz")  # what a user compiles: the saved file

    for target in ("python", "numba"):
        path = args.out / f"digits_{target}.py"
        path.write_text(templater.compile(net, target), encoding="utf-8")
        program = templater.import_program(path)
        rows = x_test.tolist() if target == "python" else x_test
        proba = np.asarray(program.score_batch(rows))
        predicted = np.array([program.predict(r) for r in rows[:200]])
        error = np.abs(proba - clf.predict_proba(x_test)).max()
        same = np.array_equal(predicted, clf.predict(x_test[:200]))  # predict gives labels
        print(
            f"{target:6s}: max |program - predict_proba| = {error:.1e}, "
            f"predictions equal to predict(): {same}, "
            f"test accuracy {np.mean(proba.argmax(1) == y_test):.3f}"
        )
        assert error < 1e-9 and same


if __name__ == "__main__":
    main()
