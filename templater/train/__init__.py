"""Training orchestration: face data -> search -> threshold on validation -> Network and reports.

Splits are by source (see `templater.data.faces`): 5 folds of sources, fold 0 tests, fold 1
validates, the rest trains. The threshold is the one with the highest validation accuracy
(midpoints between sorted validation scores; ties go to the highest, which admits fewer false
positives). Bootstrapping (Rowley, Baluja and Kanade): after the first search, scan the training
photos, add the windows scoring above the threshold as non-faces, continue the search, repeat.
An ensemble searches several networks from different seeds on the same data and merges them
into one wider network with their mean score (`templater.ensemble`).
"""

from __future__ import annotations

from templater.train.config import (
    BATCH,
    DEFAULT_ARCH,
    DEFAULT_BOOTSTRAP,
    DEFAULT_ENSEMBLE,
    DEFAULT_EPOCHS,
    FACE_RECALL_SWEEP,
    FOLDS,
    FP_PER_MEGAPIXEL,
    HARD_PER_PHOTO,
    INPUT_SHAPE,
    MAX_ENSEMBLE,
    MINE_STRIDE,
    MINE_THRESHOLD,
    ROUND_SHARE,
    THRESHOLD_RULES,
    TrainConfig,
    TrainProgress,
    TrainResult,
    check_writable,
    output_paths,
    parse_arch,
    validate,
)
from templater.train.evaluation import detector_metrics, evaluate, roc_auc
from templater.train.fit import cross_validate, fit, prepare, search_inputs, train, write_outputs
from templater.train.thresholds import (
    choose_threshold,
    detection_threshold,
    face_threshold,
    threshold_rule_text,
)

__all__ = [
    "BATCH",
    "DEFAULT_ARCH",
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_ENSEMBLE",
    "DEFAULT_EPOCHS",
    "FACE_RECALL_SWEEP",
    "FOLDS",
    "FP_PER_MEGAPIXEL",
    "HARD_PER_PHOTO",
    "INPUT_SHAPE",
    "MAX_ENSEMBLE",
    "MINE_STRIDE",
    "MINE_THRESHOLD",
    "ROUND_SHARE",
    "THRESHOLD_RULES",
    "TrainConfig",
    "TrainProgress",
    "TrainResult",
    "check_writable",
    "choose_threshold",
    "cross_validate",
    "detection_threshold",
    "detector_metrics",
    "evaluate",
    "face_threshold",
    "fit",
    "output_paths",
    "parse_arch",
    "prepare",
    "roc_auc",
    "search_inputs",
    "threshold_rule_text",
    "train",
    "validate",
    "write_outputs",
]
