import pytest

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
