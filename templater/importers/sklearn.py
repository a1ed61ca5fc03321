"""scikit-learn importer: a fitted MLPClassifier or MLPRegressor (in memory) -> Network."""

from __future__ import annotations

from typing import Any

import numpy as np

from templater.errors import MalformedModelError, UnsupportedError, UsageError
from templater.importers.chain import ChainBuilder
from templater.network import Activation, Head, Network

# scikit-learn's activation names -> templater's.
_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def from_sklearn(estimator: Any, name: str = "") -> Network:
    """A Network computing `predict_proba` (classifiers) or `predict` (regressors).

    Binary classifier: one logistic output, head `binary` with threshold 0.5, so `decide` is
    `predict(x) == classes_[1]`. Multi-class: softmax output, head `multiclass` labelled with
    `classes_`. Regressor: identity output, head `regression`. A binary classifier's string or
    integer classes label its head (the program's `predict`); any classes are also kept in
    `metadata["classes"]`.
    """
    try:
        from sklearn.neural_network import MLPClassifier, MLPRegressor
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise UsageError("from_sklearn needs scikit-learn: pip install templater[sklearn]") from exc

    if not isinstance(estimator, (MLPClassifier, MLPRegressor)):
        raise UnsupportedError(
            "from_sklearn takes a fitted MLPClassifier or MLPRegressor, "
            f"got {type(estimator).__name__}"
        )
    kind = type(estimator).__name__
    coefs = getattr(estimator, "coefs_", None)
    intercepts = getattr(estimator, "intercepts_", None)
    if coefs is None or intercepts is None:
        raise UsageError(f"this {kind} is not fitted: call fit() before from_sklearn()")
    if len(coefs) != len(intercepts) or not coefs:
        raise MalformedModelError(
            f"{kind}: {len(coefs)} weight matrices but {len(intercepts)} bias vectors"
        )
    hidden = _activation(estimator.activation, kind, "activation")
    out = _activation(estimator.out_activation_, kind, "out_activation_")

    metadata: dict[str, Any] = {"source": f"sklearn {kind}"}
    if isinstance(estimator, MLPClassifier):
        classes = [_plain(c) for c in estimator.classes_]
        if out.name == "sigmoid" and len(classes) == 2 and coefs[-1].shape[1] == 1:
            labels = None  # the program's predict(x) gives classes_[decide(x)]
            if all(isinstance(c, (str, int)) and not isinstance(c, bool) for c in classes):
                labels = tuple(classes)
            head = Head("binary", threshold=0.5, labels=labels)  # class 1 iff p > 0.5
            if all(isinstance(c, (str, int, float, bool)) for c in classes):
                metadata["classes"] = classes
        elif out.name == "softmax":
            for label in classes:
                if isinstance(label, bool) or not isinstance(label, (str, int)):
                    raise UnsupportedError(
                        f"{kind}: class labels must be strings or integers, got {label!r} "
                        f"({type(label).__name__})"
                    )
            head = Head("multiclass", labels=tuple(classes))
        else:
            raise UnsupportedError(
                f"{kind}: multi-label output ({coefs[-1].shape[1]} independent logistic outputs) "
                "is not supported; expected binary or multi-class"
            )
    else:
        head = Head("regression")

    first = np.asarray(coefs[0])
    builder = ChainBuilder(first.shape[0] if first.ndim == 2 else 0)
    for index, (w, b) in enumerate(zip(coefs, intercepts, strict=True)):
        last = index == len(coefs) - 1
        builder.affine(_floats(w, f"{kind} coefs_[{index}]"),
                       _floats(b, f"{kind} intercepts_[{index}]"), name=f"coefs_[{index}]")
        builder.activation(out if last else hidden, name=f"coefs_[{index}]")
    return builder.network(int(first.shape[0]), head, name, metadata)


def _activation(value: Any, kind: str, attribute: str) -> Activation:
    if value == "softmax" and attribute == "out_activation_":
        return Activation("softmax")
    if value not in _ACTIVATIONS:
        raise UnsupportedError(
            f"{kind}.{attribute} is {value!r}; supported: {', '.join(_ACTIVATIONS)}"
        )
    return Activation(_ACTIVATIONS[value])


def _floats(value: Any, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind != "f" or arr.dtype.itemsize not in (4, 8):
        raise UnsupportedError(f"{what}: expected float32 or float64, got dtype {arr.dtype}")
    return arr


def _plain(value: Any) -> Any:
    """A numpy scalar as the Python value (np.int64(3) -> 3, np.str_('a') -> 'a')."""
    return value.item() if isinstance(value, np.generic) else value
