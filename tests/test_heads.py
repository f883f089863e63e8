"""The classification head: units, loss and metrics per number of classes, probabilities and decisions."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from stages.lib import heads


@pytest.mark.parametrize(("classes", "units"), [(2, 1), (3, 3), (10, 10), (100, 100)])
def test_two_classes_get_one_logit_more_get_one_each(classes: int, units: int):
    assert heads.units(classes) == units


def test_one_class_is_refused():
    with pytest.raises(ValueError, match="at least two classes"):
        heads.units(1)


def test_loss_and_metrics_match_the_head():
    assert isinstance(heads.loss(2), keras.losses.BinaryCrossentropy)
    assert isinstance(heads.loss(10), keras.losses.SparseCategoricalCrossentropy)
    for classes in (2, 10):
        assert tuple(m.name for m in heads.metrics(classes)) == heads.METRICS


def test_label_smoothing_moves_the_targets_towards_uniform_for_any_number_of_classes():
    logit = 2.0
    sigmoid = 1 / (1 + np.exp(-logit))
    expected = -(0.9 * np.log(sigmoid) + 0.1 * np.log(1 - sigmoid))  # target 1 - 0.2 + 0.2 / 2
    assert float(heads.loss(2, 0.2)(np.array([[1.0]]), np.array([[logit]]))) == pytest.approx(expected, rel=1e-5)
    assert not heads.one_hot_targets(2, 0.2) and not heads.one_hot_targets(3, 0.0)
    assert heads.one_hot_targets(3, 0.3)  # sparse categorical cross-entropy has no label smoothing
    logits = np.array([[1.0, 2.0, 0.5]])
    log_softmax = logits - np.log(np.exp(logits).sum())
    expected = -(np.array([0.1, 0.8, 0.1]) * log_softmax).sum()  # 1 - 0.3 + 0.3 / 3, and 0.3 / 3
    assert float(heads.loss(3, 0.3)(np.array([[0.0, 1.0, 0.0]]), logits)) == pytest.approx(expected, rel=1e-5)
    (accuracy,) = heads.metrics(3, 0.3)
    accuracy.update_state(np.array([[0.0, 1.0, 0.0]]), logits)
    assert accuracy.name == "accuracy" and float(accuracy.result()) == 1.0


def test_binary_accuracy_thresholds_the_logit_at_zero():
    (accuracy,) = heads.metrics(2)
    accuracy.update_state(np.array([[0.0], [1.0], [1.0]]), np.array([[-0.1], [0.1], [-3.0]]))
    assert float(accuracy.result()) == pytest.approx(2 / 3)


def test_probabilities_from_one_logit_are_two_columns_without_overflow():
    probabilities = heads.probabilities(np.array([[0.0], [1000.0], [-1000.0]], np.float32))
    np.testing.assert_allclose(probabilities, [[0.5, 0.5], [0.0, 1.0], [1.0, 0.0]])
    assert probabilities.dtype == np.float64


def test_probabilities_from_several_logits_are_a_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]])
    probabilities = heads.probabilities(logits)
    expected = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(probabilities[0], expected)
    np.testing.assert_allclose(probabilities[1], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)


def test_decisions_use_the_threshold_for_two_classes_and_the_argmax_above():
    binary = np.array([[0.7, 0.3], [0.4, 0.6]])
    assert heads.predicted(binary, 0.5).tolist() == [0, 1]
    assert heads.predicted(binary, 0.25).tolist() == [1, 1]
    assert heads.predicted(np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]), 0.5).tolist() == [1, 0]
