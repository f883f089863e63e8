"""The report's figures (matplotlib, rendered with Agg, no display needed): training curves, the transfer and
fine-tuning curves as one continued run, confusion matrices, and a grid of test images with their predictions.

dvc.yaml declares the same data as `dvc plots` (interactive, per model); these are the static figures a report
or a pull-request comment can show. PNG files carry no matplotlib version, so identical inputs give identical
figures with the same matplotlib.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageOps

from stages.lib.cli import require, rerun

GRID_THUMBNAIL = 192  # pixels; the grid cells are ~2 inches at 100 dpi
DPI = 100


@dataclass(frozen=True)
class ContinuedRun:
    curves: pd.DataFrame  # epoch (1-based) + the logged metrics, transfer's epochs then fine-tuning's
    finetune_starts_at: float  # x of the line between the last transfer epoch and the first fine-tuning one
    transfer_epochs: int


def continue_run(transfer: pd.DataFrame, finetune: pd.DataFrame, finetune_logs: Path) -> ContinuedRun:
    """Transfer and fine-tuning as one run: fine-tuning's steps continue transfer's (0-9, then 10-19), so
    the x axis is step + 1 and the marker sits halfway between the two phases (10.5)."""
    last_transfer, first_finetune = int(transfer["step"].max()), int(finetune["step"].min())
    if first_finetune <= last_transfer:
        raise rerun(
            finetune_logs,
            "finetune",
            f"its logs start at step {first_finetune}, not after transfer's last step {last_transfer}, so they come "
            "from another run than transfer's",
        )
    curves = pd.concat([transfer, finetune], ignore_index=True)
    curves.insert(0, "epoch", curves.pop("step") + 1)
    return ContinuedRun(curves, (last_transfer + first_finetune) / 2 + 1, len(transfer))


def select_grid(predictions: pd.DataFrame, count: int) -> pd.DataFrame:
    """The test images the grid shows, chosen without randomness.

    Up to half of the grid (more when there are too few correct predictions) are mistakes, the most
    confident ones first (ties by path); the rest are correct predictions evenly spread over the test
    images sorted by path, so every class appears. `predictions` has path, label, predicted and confidence (the
    probability of the predicted class), as scoring.predictions_frame writes them. Returns the chosen rows,
    mistakes first then correct ones by path, with a `mistake` column.
    """
    frame = predictions.sort_values("path", kind="stable").reset_index(drop=True)
    frame["mistake"] = frame["label"] != frame["predicted"]
    count = min(count, len(frame))
    mistakes = frame[frame["mistake"]].sort_values(["confidence", "path"], ascending=[False, True], kind="stable")
    correct = frame[~frame["mistake"]]
    n_mistakes = min(len(mistakes), max(count - len(correct), math.ceil(count / 2)))
    spread = np.linspace(0, len(correct) - 1, count - n_mistakes).round().astype(int) if len(correct) else []
    return pd.concat([mistakes.head(n_mistakes), correct.iloc[spread]], ignore_index=True)


def _new_figure(width: float, height: float) -> Figure:
    # Figure + the Agg canvas directly, not pyplot: no global figure registry, no display needed.
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> None:
    # No "Software" entry: the PNG then carries no matplotlib version string.
    figure.savefig(path, dpi=DPI, metadata={"Software": None})


def _y_range(metric: str, values: np.ndarray) -> tuple[float, float]:
    """As the reference tutorial: accuracy reaches up to 1, loss down to 0. Autoscaling alone would blow a
    flat run near chance (loss 0.69315 +- 1e-5) up to the full height and make noise look like learning."""
    if metric == "accuracy":
        low, high = min(float(np.nanmin(values)), 0.95), 1.0
    else:
        low, high = 0.0, max(float(np.nanmax(values)), 0.05)
    pad = 0.05 * (high - low)
    return low - pad, high + pad


def plot_curves(curves: pd.DataFrame, metrics: list[str], title: str, path: Path, marker: float | None = None) -> None:
    """One panel per metric (accuracy above loss, as the reference tutorial), training and validation, against
    the 1-based epoch. `curves` has the columns epoch, <metric> and val_<metric>."""
    figure = _new_figure(8, 3.5 * len(metrics))
    figure.suptitle(title)
    for ax, metric in zip(figure.subplots(len(metrics), 1, sharex=True, squeeze=False).ravel(), metrics):
        ax.plot(curves["epoch"], curves[metric], marker="o", markersize=3, label=f"training {metric}")
        ax.plot(curves["epoch"], curves[f"val_{metric}"], marker="o", markersize=3, label=f"validation {metric}")
        if marker is not None:
            ax.axvline(marker, color="gray", linestyle="--", label="start of fine-tuning")
        ax.set_ylim(*_y_range(metric, curves[[metric, f"val_{metric}"]].to_numpy()))
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(loc="best")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    _save(figure, path)


def confusion_matrix(predictions: pd.DataFrame, num_classes: int) -> np.ndarray:
    """Counts, rows the true class and columns the predicted one, from a predictions table (label, predicted)."""
    matrix = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(matrix, (predictions["label"].to_numpy(int), predictions["predicted"].to_numpy(int)), 1)
    return matrix


def plot_confusion(matrices: dict[str, np.ndarray], titles: dict[str, str], class_names: list[str], path: Path) -> None:
    """One panel per model: rows the true class, columns the predicted one, coloured by the share of the row
    (so classes of any size compare), counts written in the cells while they fit."""
    n = len(class_names)
    side = max(4.0, 0.35 * n)
    figure = _new_figure(side * len(matrices), side)
    for ax, (model, matrix) in zip(figure.subplots(1, len(matrices), squeeze=False).ravel(), matrices.items()):
        shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
        ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        if n <= 12:
            for (row, col), count in np.ndenumerate(matrix):
                color = "white" if shares[row, col] > 0.5 else "black"
                ax.text(col, row, f"{count}", ha="center", va="center", color=color, fontsize=16 if n <= 4 else 9)
        ticks = range(n) if n <= 30 else range(0, n, math.ceil(n / 30))  # only the labels that fit
        ax.set_xticks(list(ticks), [class_names[i] for i in ticks], rotation=90 if n > 4 else 0)
        ax.set_yticks(list(ticks), [class_names[i] for i in ticks])
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(titles[model])
    _save(figure, path)


def load_thumbnail(raw_dir: Path, relative: str) -> Image.Image:
    path = require(raw_dir / relative, "download")
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except OSError as exc:
        raise rerun(path, "download", f"cannot be read as an image ({exc})") from None
    image.thumbnail((GRID_THUMBNAIL, GRID_THUMBNAIL))
    return image


def plot_grid(chosen: pd.DataFrame, raw_dir: Path, class_names: list[str], path: Path) -> None:
    """Each image titled with the predicted class and its probability; mistakes in red, framed, with the truth."""
    columns = max(1, math.ceil(math.sqrt(len(chosen))))  # an empty test split still gives a (blank) figure
    rows = max(1, math.ceil(len(chosen) / columns))
    figure = _new_figure(2.2 * columns, 2.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(chosen) :]:
        ax.axis("off")
    for ax, row in zip(axes, chosen.itertuples(index=False)):
        ax.imshow(load_thumbnail(raw_dir, row.path))
        ax.set_xticks([])
        ax.set_yticks([])
        title = f"{class_names[row.predicted]} {row.confidence:.2f}"
        if row.mistake:
            title += f"\nWRONG: is {class_names[row.label]}"
        ax.set_title(title, color="red" if row.mistake else "black", fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(bool(row.mistake))
            spine.set_edgecolor("red")
            spine.set_linewidth(4)
    _save(figure, path)
