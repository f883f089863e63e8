"""Scores of a classifier on the test split: metrics (scikit-learn), the predictions table and plot data (dvclive).

`probabilities` are heads.probabilities of a model's logits, one column per class, and the decisions are
heads.predicted of them. Every model gets, as flat keys: `test_images`, `accuracy`, `log_loss`, `roc_auc` (two
classes: of class 1; more: one-vs-rest, macro), `macro.*` and `weighted.*` precision / recall / f1, and per class
`class.<name>.precision|recall|f1` (keys.py: no class name can collide with another key). More than five classes
add `top_k_accuracy` (k = evaluate.top_k, `top_k`). Two classes keep the keys they had before there were more, so
`dvc metrics diff` lines up with older commits: `precision`, `recall`, `f1` (of class index 1, `dogs` in the
reference data), `average_precision` and `confusion.tn|fp|fn|tp`.

`intervals` gives the 95% interval of each of those a user compares across runs, as `<key>.low` and `<key>.high`:
`accuracy` and `top_k_accuracy` (Wilson), `macro.f1` and, with two classes, `f1` (a seeded bootstrap over the test
images; intervals.py). The headline (`headline`) carries accuracy's as one number, `ci`, half the interval's width:
`dvc metrics show` has room for one more column in 120, not for four.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from dvclive import Live
from sklearn import metrics as skm

from stages.lib import heads, intervals
from stages.lib.keys import class_key

TOP_K_ABOVE = 5  # classes; with fewer, top-k accuracy says little
# metrics/test/<model>.json, one row per model in `dvc metrics show`: the same keys for any number of classes, and
# intervals.HALF_WIDTH (accuracy's).
HEADLINE = ("accuracy", "macro.f1", "roc_auc", "log_loss")


def _value(value: float) -> float | None:
    return round(float(value), 6) if math.isfinite(value) else None


def score(
    labels: np.ndarray, probabilities: np.ndarray, threshold: float, class_names: list[str], top_k: int
) -> dict[str, float | int | None]:
    """Flat metrics of one model (see the module docstring). Undefined values (a class absent) are None."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = heads.predicted(probabilities, threshold)
    indices = list(range(len(class_names)))
    binary = len(class_names) == 2
    every_class = len(np.unique(labels)) == len(class_names)
    out: dict[str, float | int | None] = {
        "test_images": len(labels),
        "accuracy": _value(skm.accuracy_score(labels, predicted)),
        "log_loss": _value(skm.log_loss(labels, probabilities, labels=indices)),
        "roc_auc": None,
    }
    if every_class:
        ranked = probabilities[:, 1] if binary else probabilities
        out["roc_auc"] = _value(skm.roc_auc_score(labels, ranked, multi_class="ovr", average="macro", labels=indices))
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            labels, predicted, labels=indices, average=average, zero_division=0
        )
        out |= {f"{average}.precision": _value(p), f"{average}.recall": _value(r), f"{average}.f1": _value(f)}
    p, r, f, _ = skm.precision_recall_fscore_support(labels, predicted, labels=indices, zero_division=0)
    for index, name in enumerate(class_names):
        for metric, values in (("precision", p), ("recall", r), ("f1", f)):
            out[class_key(name, metric)] = _value(values[index])
    if len(class_names) > TOP_K_ABOVE:
        k = min(top_k, len(class_names) - 1)
        out["top_k"] = k
        out["top_k_accuracy"] = _value(skm.top_k_accuracy_score(labels, probabilities, k=k, labels=indices))
    if binary:
        tn, fp, fn, tp = skm.confusion_matrix(labels, predicted, labels=indices).ravel()
        out |= {"precision": _value(p[1]), "recall": _value(r[1]), "f1": _value(f[1])}
        ap = skm.average_precision_score(labels, probabilities[:, 1]) if every_class else math.nan
        out["average_precision"] = _value(ap)
        out |= {"confusion.tn": int(tn), "confusion.fp": int(fp), "confusion.fn": int(fn), "confusion.tp": int(tp)}
    return out


def score_intervals(
    labels: np.ndarray,
    probabilities: np.ndarray,
    threshold: float,
    class_names: list[str],
    top_k: int,
    resamples: int,
    seed: int,
) -> dict[str, float]:
    """`<key>.low` and `<key>.high` of the scores `score` gives that runs are compared by (module docstring): the
    accuracies' Wilson intervals, and F1's from `resamples` bootstrap resamples of the images drawn from `seed`."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = heads.predicted(probabilities, threshold)
    indices = list(range(len(class_names)))
    ends = {"accuracy": intervals.wilson(int(np.sum(predicted == labels)), len(labels))}
    if len(class_names) > TOP_K_ABOVE:
        k = min(top_k, len(class_names) - 1)
        right = skm.top_k_accuracy_score(labels, probabilities, k=k, labels=indices, normalize=False)
        ends["top_k_accuracy"] = intervals.wilson(int(right), len(labels))
    f1 = intervals.bootstrap_f1(labels, predicted, len(class_names), resamples, seed)
    ends["macro.f1"] = f1.macro
    if len(class_names) == 2:
        ends["f1"] = f1.per_class[1]  # class index 1's, as `f1`
    return {
        f"{key}.{end}": _value(value)
        for key, (low, high) in ends.items()
        for end, value in zip(("low", "high"), (low, high))
    }


def headline(scores: dict[str, float | int | None]) -> dict[str, float | None]:
    """metrics/test/<model>.json from a model's `score` and `score_intervals`: HEADLINE and accuracy's half-width."""
    return {key: scores[key] for key in HEADLINE} | {
        intervals.HALF_WIDTH: intervals.half_width(scores["accuracy.low"], scores["accuracy.high"])
    }


def predictions_frame(
    paths: list[str], labels: np.ndarray, probabilities: np.ndarray, threshold: float, class_names: list[str]
) -> pd.DataFrame:
    """One row per test image: path, label and predicted (class indices), confidence (the probability of the
    predicted class), then p_<class> for every class."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    predicted = heads.predicted(probabilities, threshold)
    frame = pd.DataFrame(
        {
            "path": paths,
            "label": np.asarray(labels).astype(int),
            "predicted": predicted,
            "confidence": np.round(probabilities[np.arange(len(predicted)), predicted], 6),
        }
    )
    columns = pd.DataFrame(np.round(probabilities, 6), columns=[f"p_{name}" for name in class_names])
    return pd.concat([frame, columns], axis=1)  # at once: a column at a time fragments a frame of 1,000 classes


def write_plot_data(folder: Path, labels: np.ndarray, probabilities: np.ndarray, threshold: float, class_names) -> None:
    """Plot data in dvclive's format under folder/plots/sklearn/, for the `dvc plots` declared in dvc.yaml
    (dvcyaml=False: dvclive never edits dvc.yaml): the confusion matrix by class name, and the ROC and
    precision-recall curves for any number of classes (`ranking`), so every declared plot exists."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities)
    predicted = heads.predicted(probabilities, threshold)
    names = np.asarray(class_names, dtype=object)
    truth, scores = ranking(labels, probabilities)
    with Live(str(folder), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        if len(np.unique(truth)) == 2:  # both outcomes present, else the curves are undefined
            # Above two classes the curves have a point per image and class: keep only those where they turn.
            fewer = {} if len(class_names) == 2 else {"drop_intermediate": True}
            live.log_sklearn_plot("roc", truth, scores)
            live.log_sklearn_plot("precision_recall", truth, scores, **fewer)
        live.log_sklearn_plot("confusion_matrix", names[labels].tolist(), names[predicted].tolist())


def ranking(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(is positive, score) pairs the ROC and precision-recall curves rank: two classes, each image by the
    probability of class 1 (the curves of older commits); more, every (image, class) pair by the probability of
    that class, one-vs-rest and micro-averaged (one curve per model, as dvc.yaml declares)."""
    labels = np.asarray(labels).astype(int)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 2:
        return labels, probabilities[:, 1]
    one_hot = np.eye(probabilities.shape[1], dtype=int)[labels]
    return one_hot.ravel(), probabilities.ravel()
