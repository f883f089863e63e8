"""Chance level: always answering the most frequent class, and a model within two standard errors of it."""

from __future__ import annotations

import pytest

from stages.lib import chance

BALANCED = {"cats": 200, "dogs": 200}


@pytest.mark.parametrize(
    ("accuracy", "per_class", "at_chance"),
    [
        (0.5, BALANCED, True),
        (0.54, BALANCED, True),  # within two standard errors (0.025 each) of 0.5
        (0.56, BALANCED, False),
        (0.12, {f"c{i}": 40 for i in range(10)}, True),  # ten classes: 0.1 + 2 x 0.015
        (0.176, {f"c{i}": 40 for i in range(10)}, False),  # above chance, if far below the best (flags)
        (0.85, {"rare": 20, "common": 380}, True),  # below always answering `common` (0.95)
    ],
)
def test_chance_level_is_the_most_frequent_class_within_two_standard_errors(accuracy, per_class, at_chance):
    assert chance.at_chance(accuracy, per_class) is at_chance


def test_the_warning_names_the_model_the_share_and_a_known_cause():
    assert chance.chance_warning("baseline", 0.9, BALANCED) is None
    assert chance.chance_warning("transfer", 0.51, BALANCED, "random weights") == (
        "transfer: val accuracy 0.5100 is no better than always answering the most frequent class (0.5000 of 400 "
        "val images); likely cause: random weights"
    )
