"""Which model a user gets and which ones are flagged: judged on the val split only."""

from __future__ import annotations

from stages.lib import chance, selection
from stages.lib.selection import Validation

BALANCED = {"cats": 200, "dogs": 200}


def scores(baseline: float, transfer: float, finetune: float, losses=(0.5, 0.5, 0.5)) -> dict[str, Validation]:
    models = ("baseline", "transfer", "finetune")
    return {m: Validation(a, loss) for m, a, loss in zip(models, (baseline, transfer, finetune), losses)}


def test_best_is_the_highest_val_accuracy():
    assert selection.choose("best", scores(0.966, 0.176, 0.303)).model == "baseline"
    assert selection.choose("best", scores(0.73, 0.93, 0.94)).model == "finetune"
    choice = selection.choose("best", scores(0.7163, 0.9125, 0.945))
    assert choice.reason == (
        "export.model: best, the highest val accuracy (baseline 0.7163, transfer 0.9125, finetune 0.9450)"
    )


def test_ties_go_to_the_lower_val_loss_then_the_later_stage():
    assert selection.choose("best", scores(0.9, 0.9, 0.8, losses=(0.2, 0.3, 0.1))).model == "baseline"
    assert selection.choose("best", scores(0.9, 0.9, 0.9)).model == "finetune"


def test_a_stage_s_name_picks_its_model_whatever_its_score():
    choice = selection.choose("transfer", scores(0.966, 0.176, 0.303))
    assert choice.model == "transfer" and choice.reason.startswith("export.model: transfer (val accuracy: baseline")


def test_flags_name_chance_level_and_a_margin_below_the_best_with_known_causes():
    ten = {f"c{i}": 40 for i in range(10)}
    flagged = selection.flags(scores(0.966, 0.112, 0.303), ten, 0.1, {"transfer": chance.RANDOM_WEIGHTS})
    assert set(flagged) == {"transfer", "finetune"}
    assert flagged["transfer"] == (
        "transfer: val accuracy 0.1120 is no better than always answering the most frequent class (0.1000 of 400 "
        "val images); likely cause: " + chance.RANDOM_WEIGHTS
    )
    assert flagged["finetune"] == (
        "finetune: val accuracy 0.3030 is 0.6630 below the best model's, more than export.flag_margin 0.1"
    )
    assert selection.flags(scores(0.9, 0.93, 0.94), BALANCED, 0.1, {}) == {}
