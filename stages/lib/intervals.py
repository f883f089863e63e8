"""95% intervals of the scores a user compares: how far a number measured on a few hundred test images can be
from the number the same model would score on all such images.

- An accuracy (or any share of images: a class's recall, an agreement) is a binomial proportion: its interval is
  Wilson's score interval (scipy), which stays inside [0, 1] and is right at 0 and 1 correct, where the textbook
  normal interval is not.
"""

from __future__ import annotations

from scipy.stats import binomtest

CONFIDENCE = 0.95


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95% Wilson score interval of successes / trials; (0.0, 1.0) with no trials (nothing is known)."""
    if trials == 0:
        return 0.0, 1.0
    interval = binomtest(int(successes), int(trials)).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(interval.low), float(interval.high)
