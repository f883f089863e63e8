"""The report's figures (matplotlib, rendered with Agg, no display needed): training curves, the transfer and
fine-tuning curves as one continued run, confusion matrices, and a grid of test images with their predictions.

dvc.yaml declares the same data as `dvc plots` (interactive, per model); these are the static figures a report
or a pull-request comment can show. PNG files carry no matplotlib version, so identical inputs give identical
figures with the same matplotlib.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import font_manager
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ft2font import FT2Font
from matplotlib.ticker import MaxNLocator
from PIL import Image

from stages.lib import images
from stages.lib.errors import require, rerun

GRID_THUMBNAIL = 192  # pixels; the grid cells are ~2 inches at 100 dpi
DPI = 100
# Class names come from the wild: longer ones are shortened in figures (the report's tables give them whole), none
# is read as matplotlib's mathtext (a class `$x$` would be typeset, a lone `$` is an error), and one that no installed
# font can draw (CJK without a CJK font) is shown by its class index, `#<index>`, rather than as empty boxes.
MAX_LABEL_CHARS = 24
# Tried in order for every character (matplotlib's font fallback), those installed: DejaVu Sans ships with matplotlib.
FONTS = ("DejaVu Sans", "Noto Sans CJK SC", "Noto Sans CJK JP", "Noto Sans CJK KR", "Source Han Sans SC",
         "WenQuanYi Zen Hei", "Microsoft YaHei", "PingFang SC")  # fmt: skip
# Confusion panels: every class named and each cell's count written up to these many classes; above NAMED_CLASSES a
# panel is a heat map of fixed size (its pixels do not grow with the square of the classes), and the
# MOST_CONFUSED classes of the final model are drawn in detail beside it.
COUNTED_CLASSES = 12
NAMED_CLASSES = 30
MOST_CONFUSED = 20
_CELL_INCHES = 0.35
_HEAT_MAP_INCHES = 7.0
_LABEL_INCHES_PER_CHAR = 0.085  # at the tick labels' 9 pt


@functools.cache
def _installed_fonts() -> tuple[tuple[str, ...], tuple[FT2Font, ...]]:
    """The FONTS installed here, and each one's regular face."""
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    names = tuple(name for name in FONTS if name in installed)
    faces = tuple(FT2Font(font_manager.findfont(font_manager.FontProperties(family=name))) for name in names)
    return names, faces


def drawable(text: str) -> bool:
    """Every character of `text` has a glyph in one of the installed FONTS."""
    faces = _installed_fonts()[1]
    return all(char.isspace() or any(face.get_char_index(ord(char)) for face in faces) for char in text)


def plain_text(draw: Callable) -> Callable:
    """Run a drawing function with mathtext off, so labels are drawn as the text they are, in the installed FONTS."""

    @functools.wraps(draw)
    def wrapper(*args, **kwargs):
        plain = {"text.parse_math": False, "font.family": "sans-serif", "font.sans-serif": _installed_fonts()[0]}
        with matplotlib.rc_context(plain):
            return draw(*args, **kwargs)

    return wrapper


def short_labels(names: list[str]) -> list[str]:
    """Class names for figures: at most MAX_LABEL_CHARS characters (cut with an ellipsis), `#<index>` for a name no
    installed font can draw, and prefixed with their class index where two would read the same."""
    short = [
        f"#{index}"
        if not drawable(name)
        else name
        if len(name) <= MAX_LABEL_CHARS
        else name[: MAX_LABEL_CHARS - 1] + "…"
        for index, name in enumerate(names)
    ]
    if len(set(short)) == len(short):
        return short
    return [f"{index}: {label}" if short.count(label) > 1 else label for index, label in enumerate(short)]


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
    frame = predictions[["path", "label", "predicted", "confidence"]]  # not a p_<class> column per class
    frame = frame.sort_values("path", kind="stable").reset_index(drop=True)
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
    _save(confusion_figure(matrices, titles, class_names), path)


@plain_text
def confusion_figure(matrices: dict[str, np.ndarray], titles: dict[str, str], class_names: list[str]) -> Figure:
    """One panel per model: rows the true class, columns the predicted one, coloured by the share of the row
    (so classes of any size compare), the classes named up to NAMED_CLASSES and the counts written up to
    COUNTED_CLASSES. Panels grow with the classes and their names' length up to NAMED_CLASSES, then stay at a fixed
    size: 1,000 classes draw as fast as 30."""
    n = len(class_names)
    labels = short_labels(class_names)
    if n <= NAMED_CLASSES:
        label_inches = 0.4 + _LABEL_INCHES_PER_CHAR * max(len(label) for label in labels)
        side = max(3.5, _CELL_INCHES * n)
        figure = _new_figure((side + label_inches) * len(matrices), side + label_inches + 0.5)
    else:
        figure = _new_figure(_HEAT_MAP_INCHES * len(matrices), _HEAT_MAP_INCHES + 0.5)
    for ax, (model, matrix) in zip(figure.subplots(1, len(matrices), squeeze=False).ravel(), matrices.items()):
        _draw_confusion(ax, matrix, list(range(n)), labels if n <= NAMED_CLASSES else None)
        ax.set_title(titles[model])
    return figure


@plain_text
def plot_most_confused(matrix: np.ndarray, class_names: list[str], title: str, path: Path) -> list[int]:
    """The MOST_CONFUSED classes with the most mistakes (as true or as predicted class) in detail: their rows and
    columns of `matrix`, coloured by the share of each whole row. Returns their class indices, as drawn."""
    errors = matrix.sum(axis=0) + matrix.sum(axis=1) - 2 * np.diag(matrix)
    chosen = sorted(np.argsort(-errors, kind="stable")[:MOST_CONFUSED].tolist())
    labels = short_labels(class_names)
    shown = [labels[i] for i in chosen]
    label_inches = 0.4 + _LABEL_INCHES_PER_CHAR * max(len(label) for label in shown)
    side = max(3.5, _CELL_INCHES * len(chosen))
    figure = _new_figure(side + label_inches, side + label_inches + 0.5)
    ax = figure.subplots()
    _draw_confusion(ax, matrix, chosen, shown)
    ax.set_title(title)
    _save(figure, path)
    return chosen


def _draw_confusion(ax, matrix: np.ndarray, rows: list[int], labels: list[str] | None) -> None:
    """Rows and columns `rows` of `matrix`, each cell coloured by its share of the whole row; `labels` None: a heat
    map without names or counts."""
    shares = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    shares, counts = shares[np.ix_(rows, rows)], matrix[np.ix_(rows, rows)]
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1, interpolation="nearest" if labels else "antialiased")
    if labels is None:
        ax.set_xlabel(f"predicted (class index of {len(rows)})")
        ax.set_ylabel("actual (class index)")
        return
    if len(rows) <= COUNTED_CLASSES:
        for (row, col), count in np.ndenumerate(counts):
            color = "white" if shares[row, col] > 0.5 else "black"
            ax.text(col, row, f"{count}", ha="center", va="center", color=color, fontsize=16 if len(rows) <= 4 else 9)
    vertical = len(rows) > 4 or max(len(label) for label in labels) > 10
    ax.set_xticks(range(len(rows)), labels, rotation=90 if vertical else 0, fontsize=9)
    ax.set_yticks(range(len(rows)), labels, fontsize=9)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")


def load_thumbnail(raw_dir: Path, relative: str) -> Image.Image:
    """The image as every stage reads it (images.decoded: any format, any bit depth), shrunk for a grid cell."""
    path = require(raw_dir / relative, "download")
    try:
        return images.thumbnail(images.read_image_file(path), GRID_THUMBNAIL)
    except (OSError, ValueError) as exc:
        raise rerun(path, "download", f"cannot be read as an image ({exc})") from None


@plain_text
def plot_grid(chosen: pd.DataFrame, raw_dir: Path, class_names: list[str], path: Path) -> None:
    """Each image titled with the predicted class and its probability; mistakes in red, framed, with the truth."""
    columns = max(1, math.ceil(math.sqrt(len(chosen))))  # an empty test split still gives a (blank) figure
    rows = max(1, math.ceil(len(chosen) / columns))
    figure = _new_figure(2.2 * columns, 2.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    labels = short_labels(class_names)
    for ax in axes[len(chosen) :]:
        ax.axis("off")
    # Rows as dicts, not itertuples: a namedtuple would turn the p_<class> columns into identifiers, which two
    # class names can share (`p_café` in NFC and NFD are one Python identifier).
    for ax, row in zip(axes, chosen.to_dict("records")):
        ax.imshow(load_thumbnail(raw_dir, row["path"]))
        ax.set_xticks([])
        ax.set_yticks([])
        title = f"{labels[row['predicted']]} {row['confidence']:.2f}"
        if row["mistake"]:
            title += f"\nWRONG: is {labels[row['label']]}"
        ax.set_title(title, color="red" if row["mistake"] else "black", fontsize=10)
        for spine in ax.spines.values():
            spine.set_visible(bool(row["mistake"]))
            spine.set_edgecolor("red")
            spine.set_linewidth(4)
    _save(figure, path)


def _file_label(relative: str) -> str:
    """A file's name for a grid title: shortened as class names are, `(file name)` where no font can draw it."""
    name = Path(relative).name
    if not drawable(name):
        return "(file name)"
    return name if len(name) <= MAX_LABEL_CHARS else name[: MAX_LABEL_CHARS - 1] + "…"


def _image_cell(ax, raw_dir: Path, relative: str, title: str, color: str = "black") -> None:
    ax.imshow(load_thumbnail(raw_dir, relative))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, color=color, fontsize=9)


def plot_label_issues(issues: pd.DataFrame, raw_dir: Path, class_names: list[str], path: Path) -> None:
    _save(label_issues_figure(issues, raw_dir, class_names), path)


@plain_text
def label_issues_figure(issues: pd.DataFrame, raw_dir: Path, class_names: list[str]) -> Figure:
    """Suspected label errors in their order (audit.py's label_issues.csv rows), each image titled with its split,
    label quality score, the given label and the suggested one (as short_labels names them)."""
    labels = dict(zip(class_names, short_labels(class_names)))
    columns = max(1, math.ceil(math.sqrt(len(issues))))
    rows = max(1, math.ceil(len(issues) / columns))
    figure = _new_figure(2.8 * columns, 3.3 * rows)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(issues) :]:
        ax.axis("off")
    for ax, row in zip(axes, issues.to_dict("records")):
        given, suggested = labels.get(row["given"], row["given"]), labels.get(row["suggested"], row["suggested"])
        title = f"{row['split']}, score {row['score']:.2f}\ngiven {given}\nsuggested {suggested}"
        _image_cell(ax, raw_dir, row["path"], title, color="firebrick")
    return figure


def plot_near_duplicates(pairs: pd.DataFrame, raw_dir: Path, path: Path) -> None:
    _save(near_duplicates_figure(pairs, raw_dir), path)


@plain_text
def near_duplicates_figure(pairs: pd.DataFrame, raw_dir: Path) -> Figure:
    """Near-duplicate pairs (audit.py's near_duplicates.csv rows), each pair side by side, two pairs a row, each image
    titled with its split and file name and the pair's similarity over the first; pairs across splits in red."""
    per_row = 1 if len(pairs) <= 1 else 2
    rows = max(1, math.ceil(len(pairs) / per_row))
    figure = _new_figure(2.6 * 2 * per_row, 3.1 * rows)
    axes = figure.subplots(rows, 2 * per_row, squeeze=False).reshape(-1, 2)
    for ax in axes[len(pairs) :].ravel():
        ax.axis("off")
    for (left, right), pair in zip(axes, pairs.to_dict("records")):
        color = "firebrick" if pair["split_a"] != pair["split_b"] else "black"
        title_a = f"similarity {pair['similarity']:.3f}\n{pair['split_a']}: {_file_label(pair['path_a'])}"
        _image_cell(left, raw_dir, pair["path_a"], title_a, color)
        _image_cell(right, raw_dir, pair["path_b"], f"\n{pair['split_b']}: {_file_label(pair['path_b'])}", color)
    return figure
