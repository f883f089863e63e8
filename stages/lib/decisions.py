"""Decisions about images added to corrections.csv, the work of imagefolder-review (stages/review.py): the audit's
suggestions accepted in bulk (`accepted_suggestions`: the most suspicious images of label_issues.csv, each a relabel to
the class the audit suggests), or the rows the review page saved (corrections.read checks them), merged into the file
(`add`: a decision about an image it already has replaces the earlier one; the file is replaced whole or not at all).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stages.lib import audit, corrections, files
from stages.lib.corrections import Correction
from stages.lib.errors import PipelineError, require


def suggested(issues: pd.DataFrame, count: int, split: str | None, max_score: float | None) -> pd.DataFrame:
    """The `count` most suspicious rows of label_issues.csv (it is ranked: lowest score first), of `split` and at
    most `max_score` when given."""
    chosen = issues if split is None else issues[issues["split"] == split]
    if max_score is not None:
        chosen = chosen[chosen["score"] <= max_score]
    return chosen.head(count)


def class_names(records: Path) -> list[str] | None:
    """The dataset's classes (the encode stage's meta.json), or None before encode has run: the split stage then
    checks the labels."""
    meta = records / "meta.json"
    return json.loads(meta.read_text())["class_names"] if meta.is_file() else None


def accepted_suggestions(
    folder: Path, count: int, split: str | None, max_score: float | None, names: list[str] | None
) -> tuple[list[Correction], str]:
    """The audit's `suggested` images of `folder` (its lists), each a relabel to the suggested class, and where they
    come from, in words."""
    issues = audit.read(require(folder, "audit"))[audit.LABEL_ISSUES]
    chosen = suggested(issues, count, split, max_score)
    if chosen.empty:
        raise PipelineError(f"{folder / audit.LABEL_ISSUES}: no suspect to accept with these options")
    note = "the audit's suggestion, score {}".format
    new = [Correction(row.path, row.sha256, "relabel", row.suggested, note(row.score)) for row in chosen.itertuples()]
    for row in new:
        corrections.check_row(row, folder / audit.LABEL_ISSUES, names)
    source = f"the {len(new)} most suspicious of {len(issues)} in {folder / audit.LABEL_ISSUES}, relabelled"
    return new, source + " to the suggested class"


def weak_judge_warning(metrics_path: Path) -> str | None:
    if not metrics_path.is_file():
        return None
    metrics = json.loads(metrics_path.read_text())
    if not metrics.get("audit.judge_weak"):
        return None
    return (
        f"the audit's judge is weak (right on {metrics['audit.judge_accuracy']:.3f} of the images out of "
        f"fold, always the most frequent class: {metrics['audit.judge_chance']:.3f}): many of its suggestions are "
        "wrong; look at them (reports/audit/review.html) before accepting them"
    )


@dataclass(frozen=True)
class Added:
    rows: int  # in the file now
    added: int
    replaced: int  # earlier decisions about the same images
    unchanged: int  # the same decisions, there already


def add(path: Path, existing: list[Correction], new: list[Correction]) -> Added:
    """Merge `new` into the decisions `existing` (the corrections file `path`, read first) and write it whole."""
    merged, added, replaced = corrections.merge(existing, new)
    files.write_text(path, corrections.to_csv(merged))
    return Added(len(merged), added, replaced, len(new) - added - replaced)
