"""Which of the three models a user gets, and which ones not to trust, judged on the validation split only (the
test split stays for reporting).

"The model" is what export writes (with the .keras file a user takes away), what predict uses by default and what
the report leads with: `export.model: best` picks the highest val accuracy (ties: the lower val loss, then the
later stage, which started from the earlier one's work); a stage's name picks that stage's model whatever its
score. A model is flagged, as a warning, when its val accuracy is at chance level (chance.py), or more than
`export.flag_margin` below the best model's, with the likely cause where the project knows it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stages.lib.chance import chance_warning

BEST = "best"


@dataclass(frozen=True)
class Validation:
    """A model's scores on the val split, as its training stage recorded them (metrics/<stage>.json)."""

    accuracy: float
    loss: float


@dataclass(frozen=True)
class Choice:
    model: str
    reason: str  # one line: why this one


def choose(setting: str, scores: dict[str, Validation]) -> Choice:
    """The model `export.model` names, or the best on validation for `best`; `scores` in the stages' order."""
    ranked = ", ".join(f"{name} {score.accuracy:.4f}" for name, score in scores.items())
    if setting != BEST:
        return Choice(setting, f"export.model: {setting} (val accuracy: {ranked})")
    order = {name: index for index, name in enumerate(scores)}
    best = max(scores, key=lambda name: (scores[name].accuracy, -scores[name].loss, order[name]))
    return Choice(best, f"export.model: best, the highest val accuracy ({ranked})")


def flags(
    scores: dict[str, Validation], val_per_class: dict[str, int], margin: float, causes: dict[str, str]
) -> dict[str, str]:
    """The models not to trust, each with its warning: at chance level, or more than `margin` below the best."""
    best = max(score.accuracy for score in scores.values())
    out = {}
    for name, score in scores.items():
        accuracy = score.accuracy
        warning = chance_warning(name, accuracy, val_per_class, causes.get(name))
        if warning is None and best - accuracy > margin:
            warning = f"{name}: val accuracy {accuracy:.4f} is {best - accuracy:.4f} below the best model's, more "
            warning += f"than export.flag_margin {margin}" + (
                f"; likely cause: {causes[name]}" if name in causes else ""
            )
        if warning:
            out[name] = warning
    return out
