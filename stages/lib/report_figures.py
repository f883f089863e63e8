"""The report's figures: which it has, each drawn from what the report stage read (report_inputs.py) into its file in
reports/figures/. Each figure's file name is said once, in FILES: `draw` writes the figures and returns their links,
and the markdown (markdown.py) shows what `draw` drew, by those links. figures.py draws each kind of figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from stages.lib import audit, figures, heads, reference
from stages.lib.markdown_parts import with_interval
from stages.lib.report_inputs import Inputs

FOLDER = "figures"  # beside report.md, which links its figures by relative path
FILES = {
    "transfer_finetune": "training_transfer_finetune.png",  # transfer and fine-tuning as one run
    "baseline": "training_baseline.png",
    "confusion": "confusion_matrices.png",  # every model's
    "most_confused": "confusion_most_confused.png",  # above figures.NAMED_CLASSES: the final model's worst classes
    "predictions": "test_predictions.png",  # the grid of test images
    "label_issues": "audit_label_issues.png",  # the audit's most suspicious labels
    "near_duplicates": "audit_near_duplicates.png",  # the audit's closest pairs
}


@dataclass(frozen=True)
class Drawn:
    """What `draw` drew: the markdown links these and says what they show."""

    links: dict[str, str]  # a key of FILES -> the figure's path relative to report.md, for every figure drawn
    continued: figures.ContinuedRun  # transfer then fine-tuning, as one run
    grid: pd.DataFrame  # the test images the predictions grid shows (figures.select_grid), of export's model


def confusion_titles(inputs: Inputs) -> dict[str, str]:
    return {m: f"{m}: accuracy {with_interval(inputs.scores, f'{m}.accuracy')}" for m in reference.MODELS}


def draw(inputs: Inputs, folder: Path, grid_images: int, audit_show: int) -> Drawn:
    """Draw every figure the report has for these inputs into `folder` (the report's FOLDER)."""
    links: dict[str, str] = {}

    def path(key: str) -> Path:
        links[key] = f"{FOLDER}/{FILES[key]}"
        return folder / FILES[key]

    metrics = [*heads.METRICS, "loss"]  # accuracy above loss, as the reference tutorial
    continued = figures.continue_run(inputs.curves["transfer"], inputs.curves["finetune"], inputs.logs["finetune"])
    title = "Transfer learning, then fine-tuning (one continued run)"
    figures.plot_curves(
        continued.curves, metrics, title, path("transfer_finetune"), marker=continued.finetune_starts_at
    )
    baseline = inputs.curves["baseline"].assign(epoch=lambda f: f["step"] + 1)
    title = f"Baseline ({inputs.params['baseline']['arch']}, from scratch)"
    figures.plot_curves(baseline, metrics, title, path("baseline"))

    matrices = {m: figures.confusion_matrix(inputs.predictions[m], len(inputs.class_names)) for m in reference.MODELS}
    titles, final = confusion_titles(inputs), inputs.export["model"]  # the model a user takes away
    figures.plot_confusion(matrices, titles, inputs.class_names, path("confusion"))
    if len(inputs.class_names) > figures.NAMED_CLASSES:
        figures.plot_most_confused(matrices[final], inputs.class_names, titles[final], path("most_confused"))
    grid = figures.select_grid(inputs.predictions[final], grid_images)
    figures.plot_grid(grid, inputs.raw_dir, inputs.class_names, path("predictions"))

    found, tables = inputs.audit.metrics, inputs.audit.tables
    if found["audit.enabled"] and audit_show:
        issues, pairs = tables[audit.LABEL_ISSUES].head(audit_show), tables[audit.NEAR_DUPLICATES].head(audit_show)
        if len(issues):
            figures.plot_label_issues(issues, inputs.raw_dir, inputs.class_names, path("label_issues"))
        if len(pairs):
            figures.plot_near_duplicates(pairs, inputs.raw_dir, path("near_duplicates"))
    return Drawn(links, continued, grid)
