"""Scores of a classifier on the test split: metrics (scikit-learn) and plot data (dvclive).

`probabilities` are heads.probabilities of the model's logits, one column per class. With two classes the
positive class is class index 1 (`dogs` in the reference data), so `precision`, `recall` and `f1` are those
of that class, and the per-class precision and recall of both classes are reported too.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from dvclive import Live
from sklearn import metrics as skm

PREDICTION_COLUMNS = ["path", "label", "probability", "predicted"]


def _finite_or_none(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def score(labels: np.ndarray, probabilities: np.ndarray, threshold: float, class_names: list[str]) -> dict:
    """Flat metrics of one model: accuracy, precision, recall, f1, roc_auc, average_precision, log_loss,
    confusion counts and per-class precision/recall. Undefined values (one class only) are None."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    out: dict[str, float | int | None] = {
        "test_images": len(labels),
        "accuracy": _finite_or_none(skm.accuracy_score(labels, predicted)),
        "precision": _finite_or_none(skm.precision_score(labels, predicted, zero_division=0)),
        "recall": _finite_or_none(skm.recall_score(labels, predicted, zero_division=0)),
        "f1": _finite_or_none(skm.f1_score(labels, predicted, zero_division=0)),
        "roc_auc": _finite_or_none(skm.roc_auc_score(labels, probabilities)) if both else None,
        "average_precision": _finite_or_none(skm.average_precision_score(labels, probabilities)) if both else None,
        "log_loss": _finite_or_none(skm.log_loss(labels, probabilities, labels=[0, 1])),
        "confusion.tn": int(tn),
        "confusion.fp": int(fp),
        "confusion.fn": int(fn),
        "confusion.tp": int(tp),
    }
    precision, recall, _, _ = skm.precision_recall_fscore_support(labels, predicted, labels=[0, 1], zero_division=0)
    for index, name in enumerate(class_names):
        out[f"{name}.precision"] = _finite_or_none(precision[index])
        out[f"{name}.recall"] = _finite_or_none(recall[index])
    return out


def predictions_frame(
    paths: list[str], labels: np.ndarray, probabilities: np.ndarray, threshold: float
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "path": paths,
            "label": np.asarray(labels).astype(int),
            "probability": np.round(np.asarray(probabilities, dtype=float), 6),
            "predicted": (np.asarray(probabilities) >= threshold).astype(int),
        },
        columns=PREDICTION_COLUMNS,
    )


def write_plot_data(folder: Path, labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> None:
    """ROC, precision-recall and confusion data in dvclive's format under folder/plots/sklearn/, for the
    `dvc plots` declared in dvc.yaml (dvcyaml=False: dvclive never edits dvc.yaml)."""
    labels = np.asarray(labels).astype(int)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    with Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        if len(np.unique(labels)) == 2:
            live.log_sklearn_plot("roc", labels, probabilities)
            live.log_sklearn_plot("precision_recall", labels, probabilities)
        live.log_sklearn_plot("confusion_matrix", labels, predicted)
