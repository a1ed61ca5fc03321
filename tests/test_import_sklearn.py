"""from_sklearn: fitted MLPs compiled through a model file match predict_proba / predict."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from importer_support import TARGETS, decisions, load_program, outputs

pytest.importorskip("sklearn")
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier, MLPRegressor

from templater.errors import UnsupportedError, UsageError
from templater.importers.sklearn import from_sklearn

TOL = 1e-9


def _fit(model, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a few iterations are enough here
        return model.fit(x, y)


def _data(n_features: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(300, n_features))


# (hidden layers, activation, number of classes, labels): several shapes and every activation.
CLASSIFIERS = [
    ((7,), "relu", 2, None),
    ((9, 4), "tanh", 2, ["no", "yes"]),
    ((5,), "logistic", 3, ["cat", "dog", "emu"]),
    ((6, 6, 3), "identity", 4, [10, 20, 30, 40]),
    ((12,), "relu", 5, None),
]


@pytest.mark.parametrize(("hidden", "activation", "n_classes", "labels"), CLASSIFIERS)
@pytest.mark.parametrize("target", TARGETS)
def test_classifier_matches_predict_proba(tmp_path, target, hidden, activation, n_classes, labels):
    x = _data(6, seed=len(hidden) + n_classes)
    y = np.digitize(x[:, 0] + 0.5 * x[:, 1], np.linspace(-1, 1, n_classes - 1))
    if labels is not None:
        y = np.array(labels)[y]
    mlp = MLPClassifier(
        hidden_layer_sizes=hidden, activation=activation, max_iter=200, random_state=0
    )
    model = _fit(mlp, x, y)
    net = from_sklearn(model)
    program = load_program(net, target, tmp_path)
    proba = model.predict_proba(x)
    got = outputs(program, net, target, x)
    if n_classes == 2:
        assert net.head.kind == "binary" and net.head.threshold == 0.5
        assert np.abs(got[:, 0] - proba[:, 1]).max() <= TOL
        expected = model.predict(x) == model.classes_[1]
    else:
        assert net.head.kind == "multiclass"
        assert net.head.labels == tuple(c.item() for c in model.classes_)
        assert all(type(label) in (str, int) for label in net.head.labels)  # no numpy scalars
        assert np.abs(got - proba).max() <= TOL
        expected = np.searchsorted(model.classes_, model.predict(x))
    assert np.array_equal(decisions(program, net, target, x), expected)


@pytest.mark.parametrize("n_outputs", [1, 3])
@pytest.mark.parametrize("target", TARGETS)
def test_regressor_matches_predict(tmp_path, target, n_outputs):
    x = _data(5, seed=n_outputs)
    y = np.stack([np.sin(x[:, 0]) + k * x[:, 1] for k in range(n_outputs)], axis=1)
    mlp = MLPRegressor(hidden_layer_sizes=(10, 4), max_iter=200, random_state=0)
    model = _fit(mlp, x, y.squeeze())
    net = from_sklearn(model)
    assert net.head.kind == "regression"
    program = load_program(net, target, tmp_path)
    got = outputs(program, net, target, x)
    assert np.abs(got - model.predict(x).reshape(len(x), n_outputs)).max() <= TOL


def test_binary_classes_are_kept_as_metadata():
    x = _data(3, seed=9)
    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    model = _fit(mlp, x, np.where(x[:, 0] > 0, 7, 3))
    assert from_sklearn(model).metadata["classes"] == [3, 7]


def test_unfitted_estimator_is_refused():
    with pytest.raises(UsageError, match="not fitted"):
        from_sklearn(MLPClassifier())


@pytest.mark.parametrize("estimator", [LogisticRegression(), "MLPClassifier", None])
def test_other_types_are_refused(estimator):
    with pytest.raises(UnsupportedError, match="MLPClassifier or MLPRegressor"):
        from_sklearn(estimator)


def test_multilabel_classifier_is_refused():
    x = _data(4, seed=3)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(int)
    model = _fit(MLPClassifier(hidden_layer_sizes=(4,), max_iter=50, random_state=0), x, y)
    with pytest.raises(UnsupportedError, match="multi-label"):
        from_sklearn(model)


def test_poisson_regressor_output_is_refused():
    x = _data(3, seed=4)
    model = _fit(
        MLPRegressor(hidden_layer_sizes=(4,), loss="poisson", max_iter=50, random_state=0),
        x,
        np.exp(x[:, 0]),
    )
    with pytest.raises(UnsupportedError, match="out_activation_ is 'exp'"):
        from_sklearn(model)
