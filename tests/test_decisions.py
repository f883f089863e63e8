"""imagefolder-review's work: which of the audit's suggestions are taken, as relabels checked like corrections.csv's
rows; a weak judge's warning; decisions merged and the file written whole. (tests/test_review.py runs the command.)"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from stages.lib import audit, corrections, decisions
from stages.lib.corrections import Correction
from stages.lib.errors import PipelineError

ISSUES = pd.DataFrame(
    {"path": ["a/1.jpg", "b/2.jpg", "c/3.jpg"], "split": ["test", "train", "test"], "given": ["x", "y", "x"],
     "suggested": ["y", "x", "z"], "score": [0.01, 0.02, 0.3], "sha256": [f"{n:064x}" for n in (1, 2, 3)]}
)  # fmt: skip


def test_the_most_suspicious_first_of_a_split_under_a_score():
    assert list(decisions.suggested(ISSUES, 2, None, None)["path"]) == ["a/1.jpg", "b/2.jpg"]
    assert list(decisions.suggested(ISSUES, 5, "test", None)["path"]) == ["a/1.jpg", "c/3.jpg"]
    assert list(decisions.suggested(ISSUES, 5, "test", 0.1)["path"]) == ["a/1.jpg"]


def test_accepted_suggestions_are_relabels_checked_against_the_classes(tmp_path: Path):
    audit.write(tmp_path, audit.empty_tables() | {audit.LABEL_ISSUES: ISSUES})
    new, source = decisions.accepted_suggestions(tmp_path, 2, None, None, ["x", "y", "z"])
    assert [(row.path, row.action, row.label) for row in new] == [
        ("a/1.jpg", "relabel", "y"),
        ("b/2.jpg", "relabel", "x"),
    ]
    assert source.startswith("the 2 most suspicious of 3 in ") and new[0].note == "the audit's suggestion, score 0.01"
    with pytest.raises(PipelineError, match="relabel to 'y', which is not a class"):
        decisions.accepted_suggestions(tmp_path, 1, None, None, ["x", "z"])
    with pytest.raises(PipelineError, match="no suspect to accept with these options"):
        decisions.accepted_suggestions(tmp_path, 1, "val", None, None)


def test_a_weak_judge_is_said_and_a_sound_or_missing_one_is_not(tmp_path: Path):
    metrics = tmp_path / "audit.json"
    assert decisions.weak_judge_warning(metrics) is None  # no audit yet
    metrics.write_text(json.dumps({"audit.judge_weak": False}))
    assert decisions.weak_judge_warning(metrics) is None
    metrics.write_text(json.dumps({"audit.judge_weak": True, "audit.judge_accuracy": 0.41, "audit.judge_chance": 0.36}))
    assert decisions.weak_judge_warning(metrics).startswith("the audit's judge is weak (right on 0.410 of the images")


def test_added_decisions_replace_earlier_ones_about_the_same_image_and_the_file_is_written_whole(tmp_path: Path):
    path = tmp_path / "corrections.csv"
    existing = [Correction("a/1.jpg", f"{1:064x}", "relabel", "y")]
    new = [Correction("a/1.jpg", f"{1:064x}", "keep"), Correction("c/3.jpg", f"{3:064x}", "drop")]
    done = decisions.add(path, existing, new)
    assert (done.rows, done.added, done.replaced, done.unchanged) == (2, 1, 1, 0)
    assert [(row.path, row.action) for row in corrections.read(path)] == [("a/1.jpg", "keep"), ("c/3.jpg", "drop")]
