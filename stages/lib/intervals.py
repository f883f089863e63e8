"""95% intervals of the scores a user compares: how far a number measured on a few hundred test images can be
from the number the same model would score on all such images, and whether two numbers differ by more than that.

- An accuracy (or any share of images: a class's recall, an agreement) is a binomial proportion: its interval is
  Wilson's score interval (scipy), which stays inside [0, 1] and is right at 0 and 1 correct, where the textbook
  normal interval is not.
- An F1 (a class's, or the macro average over classes) is no proportion: its interval is a seeded percentile
  bootstrap over the test images (scipy), every class's F1 from the same resamples.
- Two models scored on the same images are compared image by image (paired): McNemar's exact test, a binomial test
  of the images only one of the two gets right. Only those images carry information about which model is better;
  the images both get right or both get wrong cancel out, which is why a paired comparison sees differences that
  two overlapping intervals hide.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest, bootstrap

CONFIDENCE = 0.95
# The headline key beside `accuracy` in metrics/val/<model>.json and metrics/test/<model>.json: half the width of its
# 95% interval, to 3 places (`dvc metrics show` has room for one such column in 120; the ends are in the details).
HALF_WIDTH = "ci"
BOOTSTRAP_BATCH_INDICES = 10_000_000  # resampled image indices held at once (80 MB of int64), whatever the split's size


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval of successes / trials; (0.0, 1.0) with no trials (nothing is known)."""
    if trials == 0:
        return 0.0, 1.0
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)


def wilson_of_share(share: float, trials: int) -> tuple[float, float]:
    """wilson() of an accuracy given as a share of `trials` images (as Keras logs it): the images it counts are
    share x trials, rounded to the whole image it is."""
    return wilson(round(share * trials), trials)


def half_width(low: float, high: float) -> float:
    """Half the width of an interval, to 3 places: the headline's `ci` (HALF_WIDTH). Wilson's interval is not
    symmetric about the score (it leans towards 0.5), so `score +- ci` is its size, not its ends."""
    return round((high - low) / 2, 3)


def per_class_f1(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """F1 of every class (scikit-learn's, with zero_division=0) of class indices along the last axis; leading axes
    (bootstrap resamples) are kept: shape (..., classes). Counted with one bincount, so a resample costs its images,
    not its images times the classes."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    leading = labels.shape[:-1]
    rows = int(np.prod(leading))
    offsets = (np.arange(rows, dtype=np.int64) * classes)[:, None]
    labels, predicted = labels.reshape(rows, -1) + offsets, predicted.reshape(rows, -1) + offsets
    size = rows * classes
    actual = np.bincount(labels.ravel(), minlength=size)
    chosen = np.bincount(predicted.ravel(), minlength=size)
    right = np.bincount(labels[labels == predicted], minlength=size)
    support = actual + chosen  # 2 x true positives / (true + predicted): F1 without precision and recall apart
    f1 = np.divide(2.0 * right, support, out=np.zeros(size), where=support > 0)
    return f1.reshape(*leading, classes)


@dataclass(frozen=True)
class F1Intervals:
    per_class: list[tuple[float, float]]  # the 95% interval of each class's F1, in class index order
    macro: tuple[float, float]  # of their unweighted mean


def bootstrap_f1(labels: np.ndarray, predicted: np.ndarray, classes: int, resamples: int, seed: int) -> F1Intervals:
    """95% percentile-bootstrap intervals of every class's F1 and of macro F1: `resamples` resamples of the images
    (with replacement, labels and predictions together), drawn from `seed` (the same intervals in every run).
    Percentile, not BCa: BCa's jackknife scores every subset of n - 1 images (quadratic in the test images) and is
    undefined when every resample scores the same (a perfect model), where percentile gives that score."""
    labels, predicted = np.asarray(labels, dtype=np.int64), np.asarray(predicted, dtype=np.int64)
    if len(labels) == 0:
        return F1Intervals([(0.0, 1.0)] * classes, (0.0, 1.0))

    def scores(labels: np.ndarray, predicted: np.ndarray, axis: int = -1) -> np.ndarray:
        f1 = per_class_f1(labels, predicted, classes)  # (..., classes)
        return np.moveaxis(np.concatenate([f1, f1.mean(axis=-1, keepdims=True)], axis=-1), -1, 0)

    result = bootstrap(
        (labels, predicted),
        scores,
        n_resamples=resamples,
        batch=max(1, BOOTSTRAP_BATCH_INDICES // len(labels)),
        vectorized=True,
        paired=True,
        confidence_level=CONFIDENCE,
        method="percentile",
        rng=np.random.default_rng(seed),
    )
    low, high = np.clip(result.confidence_interval.low, 0, 1), np.clip(result.confidence_interval.high, 0, 1)
    ends = [(float(lo), float(hi)) for lo, hi in zip(low, high)]
    return F1Intervals(ends[:-1], ends[-1])


@dataclass(frozen=True)
class Comparison:
    """Two models (or two runs) scored on the same images."""

    images: int
    first_only: int  # images the first gets right and the second wrong
    second_only: int  # the reverse
    p_value: float  # McNemar's exact test: two-sided binomial test of first_only among first_only + second_only

    @property
    def difference(self) -> float:
        """first's accuracy minus second's."""
        return (self.first_only - self.second_only) / self.images if self.images else 0.0

    @property
    def in_noise(self) -> bool:
        """The difference is inside the noise: the test cannot tell the two apart at 95%."""
        return self.p_value >= 1 - CONFIDENCE


def mcnemar(first_correct: np.ndarray, second_correct: np.ndarray) -> Comparison:
    """McNemar's exact test of two models' per-image correctness on the same images, in the same order."""
    first, second = np.asarray(first_correct, dtype=bool), np.asarray(second_correct, dtype=bool)
    if first.shape != second.shape:
        raise ValueError(f"correctness of {first.shape} and {second.shape} images: not the same images")
    first_only, second_only = int(np.sum(first & ~second)), int(np.sum(second & ~first))
    discordant = first_only + second_only
    p_value = binomtest(first_only, discordant).pvalue if discordant else 1.0
    return Comparison(len(first), first_only, second_only, float(p_value))


def significant(first_only: int, second_only: int) -> bool:
    """McNemar's exact test puts the difference of these counts outside the noise."""
    discordant = first_only + second_only
    return bool(discordant) and binomtest(first_only, discordant).pvalue < 1 - CONFIDENCE


def smallest_significant_change() -> int:
    """The fewest images right that one model can gain over another and be outside the noise (McNemar's exact
    test), on any number of images: when they disagree on those images only, all in its favour (six at 95%)."""
    change = 1
    while not significant(change, 0):
        change += 1
    return change


def most_disagreements(change: int, images: int) -> int | None:
    """The most images (of `images`) two models may disagree on for one of them to get `change` more right and be
    outside the noise (McNemar's exact test); None when no number of disagreements makes `change` enough. More
    disagreements with the same change are more noise, so the answer is a bisection over them."""
    if change > images or not significant(change, 0):
        return None
    low, high = 0, (images - change) // 2  # images the other model alone gets right: low is outside the noise
    while low < high:
        middle = (low + high + 1) // 2
        if significant(change + middle, middle):
            low = middle
        else:
            high = middle - 1
    return change + 2 * low
