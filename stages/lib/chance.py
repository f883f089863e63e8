"""Chance level: the accuracy a classifier gets without learning anything, and a model no better than it.

Always answering the most frequent class of a split scores that class's share; a model whose val accuracy is within
two standard errors of that share (closer than that is noise on a split of that size) has learned nothing that
shows. The training stages warn of such a model as they finish, and export flags it (selection.py).
"""

from __future__ import annotations

import math

BUNDLED_BASE = "pretrained/mobilenet_v2_animals.weights.h5"  # the offline base the project ships
# The one cause of a chance-level model the project knows for certain.
RANDOM_WEIGHTS = (
    "model.weights: none gives the base random weights, and a randomly initialised frozen base cannot transfer "
    f"anything; offline, use the bundled base (model.weights: {BUNDLED_BASE})"
)


def majority_share(per_class: dict[str, int]) -> float:
    """The accuracy of always answering the most frequent class of a split."""
    return max(per_class.values()) / max(sum(per_class.values()), 1)


def at_chance(accuracy: float, per_class: dict[str, int]) -> bool:
    """No better than always answering the most frequent class, within two standard errors of that share."""
    share, count = majority_share(per_class), max(sum(per_class.values()), 1)
    return accuracy < share + 2 * math.sqrt(share * (1 - share) / count)


def chance_warning(model: str, accuracy: float, per_class: dict[str, int], cause: str | None = None) -> str | None:
    """The warning line for a model at chance level on validation, or None."""
    if not at_chance(accuracy, per_class):
        return None
    share = majority_share(per_class)
    line = (
        f"{model}: val accuracy {accuracy:.4f} is no better than always answering the most frequent class "
        f"({share:.4f} of {sum(per_class.values())} val images)"
    )
    return line + (f"; likely cause: {cause}" if cause else "")
