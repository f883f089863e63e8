import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from stages.lib import intervals


def test_wilson_matches_the_closed_form():
    # Wilson's interval written out: (p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n), z = 1.959964.
    z, successes, trials = 1.959964, 186, 200
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * (p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5 / (1 + z * z / trials)
    assert intervals.wilson(successes, trials) == pytest.approx((centre - half, centre + half), abs=1e-6)


def test_wilson_stays_inside_zero_and_one_at_the_ends():
    low, high = intervals.wilson(0, 20)
    assert low == 0.0 and 0.1 < high < 0.2
    low, high = intervals.wilson(20, 20)
    assert 0.8 < low < 0.9 and high == pytest.approx(1.0)


def test_wilson_narrows_with_more_images():
    small, large = intervals.wilson(90, 100), intervals.wilson(900, 1000)
    assert large[1] - large[0] < small[1] - small[0]


def test_wilson_of_nothing_is_everything():
    assert intervals.wilson(0, 0) == (0.0, 1.0)


def test_wilson_of_share_counts_the_whole_images_keras_averaged():
    # Keras logs 0.945 on 800 val images as the float32 0.94499999...: 756 images, not 755.
    assert intervals.wilson_of_share(float(np.float32(0.945)), 800) == intervals.wilson(756, 800)


def test_half_width_is_the_headline_size_of_an_interval():
    low, high = intervals.wilson(188, 200)  # 0.94: (0.898, 0.966), asymmetric about 0.94
    assert intervals.half_width(low, high) == 0.034
    assert 0.94 - low > high - 0.94  # Wilson leans towards 0.5: why the headline gives a size, not the ends


@pytest.mark.parametrize("classes", [2, 3, 7])
def test_per_class_f1_is_scikit_learn_s_for_every_resample_at_once(classes: int):
    rng = np.random.default_rng(classes)
    labels = rng.integers(0, classes, size=(4, 50))
    predicted = np.where(rng.random((4, 50)) < 0.7, labels, rng.integers(0, classes, size=(4, 50)))
    labels[0] = 0  # a resample where classes 1.. never occur: scikit-learn's zero_division=0
    got = intervals.per_class_f1(labels, predicted, classes)
    assert got.shape == (4, classes)
    for row in range(4):
        expected = f1_score(labels[row], predicted[row], labels=range(classes), average=None, zero_division=0)
        assert got[row] == pytest.approx(expected, abs=1e-12)


def test_bootstrap_f1_is_a_percentile_bootstrap_over_the_images():
    """The same intervals as the bootstrap written out (resample images with replacement, score, take the 2.5%
    and 97.5% quantiles), up to the Monte Carlo error of the resamples."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    predicted = np.where(rng.random(300) < 0.8, labels, rng.integers(0, 3, 300))
    got = intervals.bootstrap_f1(labels, predicted, 3, resamples=4000, seed=1)
    draws = np.random.default_rng(2).integers(0, 300, size=(4000, 300))
    macro = intervals.per_class_f1(labels[draws], predicted[draws], 3).mean(axis=1)  # scikit-learn's: tested above
    assert got.macro == pytest.approx(tuple(np.quantile(macro, [0.025, 0.975])), abs=0.01)
    point = f1_score(labels, predicted, average=None)
    assert all(low < f1 < high for (low, high), f1 in zip(got.per_class, point))
    assert got.macro[0] < f1_score(labels, predicted, average="macro") < got.macro[1]


def test_bootstrap_f1_is_seeded_and_narrows_with_more_images():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 2000)
    predicted = np.where(rng.random(2000) < 0.85, labels, 1 - labels)
    first = intervals.bootstrap_f1(labels, predicted, 2, resamples=1000, seed=42)
    assert intervals.bootstrap_f1(labels, predicted, 2, resamples=1000, seed=42) == first
    assert intervals.bootstrap_f1(labels, predicted, 2, resamples=1000, seed=7) != first
    small = intervals.bootstrap_f1(labels[:100], predicted[:100], 2, resamples=1000, seed=42)
    assert first.macro[1] - first.macro[0] < (small.macro[1] - small.macro[0]) / 2  # 20x the images: ~1/4.5 as wide


def test_bootstrap_f1_of_a_perfect_model_and_of_no_images():
    labels = np.array([0, 1] * 20)
    assert intervals.bootstrap_f1(labels, labels, 2, resamples=1000, seed=0).macro == (1.0, 1.0)
    assert intervals.bootstrap_f1(np.array([], int), np.array([], int), 2, 1000, 0).macro == (0.0, 1.0)


def test_mcnemar_is_the_exact_binomial_test_of_the_images_one_model_alone_gets_right():
    first = np.array([True] * 9 + [False] * 2 + [True] * 80 + [False] * 9)
    second = np.array([False] * 9 + [True] * 2 + [True] * 80 + [False] * 9)
    result = intervals.mcnemar(first, second)
    assert (result.images, result.first_only, result.second_only) == (100, 9, 2)
    # two-sided: twice P(X <= 2) for X ~ Binomial(11, 1/2)
    assert result.p_value == pytest.approx(2 * sum(math.comb(11, i) for i in range(3)) / 2**11)
    assert result.difference == pytest.approx(0.07) and result.in_noise  # p = 0.065
    assert not intervals.mcnemar(np.r_[first, [True]], np.r_[second, [False]]).in_noise  # 10 against 2: p = 0.039
    assert intervals.mcnemar(second, first).difference == pytest.approx(-0.07)


def test_mcnemar_of_identical_models_is_no_difference():
    same = np.array([True, False, True])
    result = intervals.mcnemar(same, same)
    assert result.p_value == 1.0 and result.difference == 0.0 and result.in_noise
    with pytest.raises(ValueError, match="not the same images"):
        intervals.mcnemar(same, same[:2])


def test_six_images_is_the_least_change_outside_the_noise():
    # All disagreements one way: p = 2 / 2**k; 2 / 2**5 = 0.0625, 2 / 2**6 = 0.031.
    assert intervals.smallest_significant_change() == 6
    assert intervals.significant(6, 0) and not intervals.significant(5, 0)


@pytest.mark.parametrize("images", [40, 93, 200])
def test_most_disagreements_is_the_last_count_at_which_a_change_stays_outside_the_noise(images: int):
    for change in range(1, min(images, 30) + 1):
        expected = None
        for second_only in range((images - change) // 2 + 1):  # every split of the disagreements, written out
            if intervals.significant(change + second_only, second_only):
                expected = change + 2 * second_only
        assert intervals.most_disagreements(change, images) == expected, change
    assert intervals.most_disagreements(5, images) is None and intervals.most_disagreements(6, images) == 6
