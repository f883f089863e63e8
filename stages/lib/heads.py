"""The classification head, stated once: how a model's output relates to the classes, and what training tracks.

Two classes: one logit, sigmoid, binary cross-entropy (the reference tutorial, and its exact parameter counts).
More classes: one logit per class, softmax, sparse categorical cross-entropy. Every model here outputs logits;
class probabilities are computed from them outside the model, by `probabilities` (evaluate, export, predict).

`METRICS` are the names training tracks besides the loss: compiled into every model (`metrics`), logged per
epoch by dvclive (`train/<name>`, `eval/<name>`), summarised in metrics/<stage>.json (`train.<name>`,
`val.<name>`) and drawn in the report. A metric added here appears in all four.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

METRICS = ("accuracy",)
MAIN_OUTPUT = "logit"  # the baseline CNNs' output layer; a model with more outputs logs its metrics as logit_<name>


def units(num_classes: int) -> int:
    """Logits a model outputs: 1 for two classes, else one per class."""
    if num_classes < 2:
        raise ValueError(f"a classifier needs at least two classes, got {num_classes}")
    return 1 if num_classes == 2 else num_classes


def one_hot_targets(num_classes: int, label_smoothing: float) -> bool:
    """Whether training feeds one-hot labels instead of class indices: Keras' sparse categorical cross-entropy
    cannot smooth labels, so more than two classes with label smoothing train on one-hot labels."""
    return units(num_classes) > 1 and label_smoothing > 0


def loss(num_classes: int, label_smoothing: float = 0.0) -> keras.losses.Loss:
    import keras  # here, not at the top: params.py imports this module without Keras

    if units(num_classes) == 1:
        return keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    if one_hot_targets(num_classes, label_smoothing):
        return keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def metrics(num_classes: int, label_smoothing: float = 0.0) -> list[keras.metrics.Metric]:
    """The Keras metrics named in METRICS, for a model with `num_classes` classes (and the labels `loss` takes)."""
    import keras

    if units(num_classes) == 1:
        accuracy = keras.metrics.BinaryAccuracy(threshold=0.0, name="accuracy")  # logit 0 is probability 0.5
    elif one_hot_targets(num_classes, label_smoothing):
        accuracy = keras.metrics.CategoricalAccuracy(name="accuracy")
    else:
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    return [accuracy]  # in METRICS order (tests/test_heads.py holds the names to it)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities, shape (images, classes), float64, from a model's logits (images, units).

    One logit: [1 - sigmoid, sigmoid], computed without overflow for large logits of either sign.
    Several: softmax. float64 because JSON writers and scikit-learn's curves take plain floats.
    """
    logits = np.asarray(logits, dtype=np.float64)
    logits = logits.reshape(len(logits), -1)
    if logits.shape[1] == 1:
        positive = np.exp(-np.logaddexp(0.0, -logits[:, 0]))
        negative = np.exp(-np.logaddexp(0.0, logits[:, 0]))
        return np.stack([negative, positive], axis=1)
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def predicted(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Class index per image: two classes, class 1 when its probability reaches `threshold`; more, the most
    probable class (the threshold applies to the binary decision only)."""
    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 2:
        return (probabilities[:, 1] >= threshold).astype(int)
    return probabilities.argmax(axis=1).astype(int)
