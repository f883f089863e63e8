"""The run report: figures (matplotlib, rendered with Agg) and one markdown file that links them.

Figures are referenced by relative path (`figures/<name>.png`), so the reports/ folder reads on its own
and as a pull-request comment. Nothing in the markdown depends on the clock or on dict order: identical
inputs give an identical report.md (PNG bytes may still differ between matplotlib versions).

Reference figures (earlier experiments on the real data with ImageNet weights) are quoted beside this
run's numbers and labelled as such; when the run used other data or other weights, the report says
plainly that its numbers are not comparable with them.
"""

from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image, ImageOps

from stages.lib.cli import PipelineError

MODELS = ("baseline", "transfer", "finetune")
GRID_MODEL = "finetune"  # the grid shows the final model's predictions
CURVE_METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
REFERENCE_SOURCE = "cats_and_dogs_filtered"
REFERENCE_WEIGHTS = "imagenet"
# Earlier experiments, quoted for orientation only: NOT results of this run.
REFERENCE = {
    "baseline": "0.71 val accuracy (seed 001, small CNN)",
    "transfer": "0.9765 test accuracy (seed 002)",
    "finetune": "0.979 test accuracy (seed 002)",
}
# Distribution names whose versions the provenance lists; the first installed name of each row wins
# (TensorFlow is installed as tensorflow-cpu here).
LIBRARIES = {
    "tensorflow": ("tensorflow", "tensorflow-cpu"),
    "keras": ("keras",),
    "dvc": ("dvc",),
    "dvclive": ("dvclive",),
    "numpy": ("numpy",),
    "pandas": ("pandas",),
    "pillow": ("pillow",),
    "scikit-learn": ("scikit-learn",),
    "matplotlib": ("matplotlib",),
}
GRID_THUMBNAIL = 192  # pixels; the grid cells are ~2 inches at 100 dpi
DPI = 100


# ---- inputs ---------------------------------------------------------------------------------------


def missing(path: Path, stage: str) -> PipelineError:
    return PipelineError(f"{path}: missing; run the {stage} stage first (dvc repro {stage})")


@dataclass(frozen=True)
class Metrics:
    """A flat JSON file with the stage that writes it, so a missing key names both."""

    path: Path
    stage: str
    values: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise PipelineError(
                f"{self.path}: no {key!r}; re-run the {self.stage} stage (dvc repro {self.stage})"
            ) from None


def read_metrics(path: Path, stage: str) -> Metrics:
    try:
        values = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise missing(path, stage) from None
    except json.JSONDecodeError as exc:
        raise PipelineError(f"{path}: not valid JSON ({exc}); re-run the {stage} stage (dvc repro {stage})") from None
    return Metrics(Path(path), stage, values)


def read_curves(live_dir: Path, stage: str) -> pd.DataFrame:
    """dvclive's per-epoch TSVs of one stage, joined on `step` (0-based epoch): step + CURVE_METRICS."""
    frame = None
    for name in CURVE_METRICS:
        path = Path(live_dir) / "plots" / "metrics" / f"{name}.tsv"
        if not path.is_file():
            raise missing(path, stage)
        column = pd.read_csv(path, sep="\t")
        if not {"step", name} <= set(column.columns):
            raise PipelineError(f"{path}: expected the columns step and {name}, found {list(column.columns)}")
        column = column[["step", name]]
        frame = column if frame is None else frame.merge(column, on="step", how="outer")
    if frame.empty:
        raise PipelineError(f"{live_dir}: no epochs logged; re-run the {stage} stage (dvc repro {stage})")
    return frame.sort_values("step").reset_index(drop=True)


def read_roc(path: Path) -> pd.DataFrame:
    try:
        return pd.DataFrame(json.loads(Path(path).read_text())["roc"], columns=["fpr", "tpr", "threshold"])
    except FileNotFoundError:
        raise missing(path, "evaluate") from None


@dataclass(frozen=True)
class InputPaths:
    metrics: Path  # data.json, <model>.json, eval.json
    dvclive: Path  # <model>/plots/metrics/*.tsv
    evaluation: Path  # <model>/predictions.csv, <model>/plots/sklearn/roc.json
    records: Path  # meta.json (class names)
    raw: Path  # manifest.json and the images shown in the grid
    params: Path  # the whole params.yaml, for provenance


@dataclass(frozen=True)
class Inputs:
    data: Metrics
    training: dict[str, Metrics]
    scores: Metrics
    curves: dict[str, pd.DataFrame]
    rocs: dict[str, pd.DataFrame | None]  # None where the ROC is undefined (one class in the test split)
    predictions: pd.DataFrame  # GRID_MODEL's
    class_names: list[str]
    manifest: Metrics
    params_text: str
    params: dict[str, Any]
    raw_dir: Path


def load_inputs(paths: InputPaths) -> Inputs:
    """Read everything the report shows, failing early (before any figure) on the first missing input."""
    data = read_metrics(paths.metrics / "data.json", "split")
    manifest = read_metrics(paths.raw / "manifest.json", "download")
    class_names = read_metrics(paths.records / "meta.json", "encode")["class_names"]
    training = {m: read_metrics(paths.metrics / f"{m}.json", m) for m in MODELS}
    curves = {m: read_curves(paths.dvclive / m, m) for m in MODELS}
    scores = read_metrics(paths.metrics / "eval.json", "evaluate")
    rocs: dict[str, pd.DataFrame | None] = {}
    for m in MODELS:
        # evaluate writes no ROC data when the test split holds one class only (and roc_auc is then null).
        rocs[m] = None if scores[f"{m}.roc_auc"] is None else read_roc(paths.evaluation / m / "plots/sklearn/roc.json")
    predictions_path = paths.evaluation / GRID_MODEL / "predictions.csv"
    if not predictions_path.is_file():
        raise missing(predictions_path, "evaluate")
    params_text = Path(paths.params).read_text()
    return Inputs(
        data=data,
        training=training,
        scores=scores,
        curves=curves,
        rocs=rocs,
        predictions=pd.read_csv(predictions_path),
        class_names=list(class_names),
        manifest=manifest,
        params_text=params_text,
        params=yaml.safe_load(params_text),
        raw_dir=Path(paths.raw),
    )


# ---- pure computations (tested directly) ----------------------------------------------------------


@dataclass(frozen=True)
class ContinuedRun:
    curves: pd.DataFrame  # epoch (1-based) + CURVE_METRICS, transfer's epochs then fine-tuning's
    finetune_starts_at: float  # x of the line between the last transfer epoch and the first fine-tuning one
    transfer_epochs: int


def continue_run(transfer: pd.DataFrame, finetune: pd.DataFrame) -> ContinuedRun:
    """Transfer and fine-tuning as one run: fine-tuning's steps continue transfer's (0-9, then 10-19), so
    the x axis is step + 1 and the marker sits halfway between the two phases (10.5)."""
    last_transfer, first_finetune = int(transfer["step"].max()), int(finetune["step"].min())
    if first_finetune <= last_transfer:
        raise PipelineError(
            f"fine-tuning logs start at step {first_finetune}, not after transfer's last step {last_transfer}: "
            "the logs are from different runs; re-run the finetune stage (dvc repro finetune)"
        )
    curves = pd.concat([transfer, finetune], ignore_index=True)
    curves.insert(0, "epoch", curves.pop("step") + 1)
    return ContinuedRun(curves, (last_transfer + first_finetune) / 2 + 1, len(transfer))


def select_grid(predictions: pd.DataFrame, count: int) -> pd.DataFrame:
    """The test images the grid shows, chosen without randomness.

    Up to half of the grid (more when there are too few correct predictions) are mistakes, the most
    confident ones first (ties by path); the rest are correct predictions evenly spread over the test
    images sorted by path, so both classes appear. Returns the chosen rows, mistakes first then correct
    ones by path, with `mistake` and `confidence` (the probability of the predicted class) columns.
    """
    frame = predictions.sort_values("path", kind="stable").reset_index(drop=True)
    frame["mistake"] = frame["label"] != frame["predicted"]
    frame["confidence"] = np.where(frame["predicted"] == 1, frame["probability"], 1 - frame["probability"])
    count = min(count, len(frame))
    mistakes = frame[frame["mistake"]].sort_values(["confidence", "path"], ascending=[False, True], kind="stable")
    correct = frame[~frame["mistake"]]
    n_mistakes = min(len(mistakes), max(count - len(correct), math.ceil(count / 2)))
    spread = np.linspace(0, len(correct) - 1, count - n_mistakes).round().astype(int) if len(correct) else []
    return pd.concat([mistakes.head(n_mistakes), correct.iloc[spread]], ignore_index=True)


def is_reference_source(source: str) -> bool:
    """The named reference dataset, or an archive (local or URL) named like it: README's offline route is to
    download cats_and_dogs_filtered.zip elsewhere and set it as the source. No hash is published for the zip,
    so the name is all there is to go by."""
    name = source.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"\.(zip|tar|tar\.gz|tgz)$", "", name, flags=re.IGNORECASE) == REFERENCE_SOURCE


def comparability_notice(source: str, weights: str) -> str:
    """One blockquote saying whether the reference figures apply to this run."""
    differences = []
    if not is_reference_source(source):
        what = " (generated offline sample data)" if source == "sample" else ""
        differences.append(f"data source `{source}`{what} instead of `{REFERENCE_SOURCE}`")
    if weights != REFERENCE_WEIGHTS:
        what = " (random initialization)" if weights == "none" else ""
        differences.append(f"model weights `{weights}`{what} instead of ImageNet")
    if not differences:
        return (
            f"> This run used the reference data (`{source}`) and ImageNet weights, so the reference "
            "figures are a fair comparison (other seeds; the reference's test images differ, see README)."
        )
    return (
        "> **Not comparable with the reference figures.** This run used "
        + " and ".join(differences)
        + ". Its numbers show that the pipeline runs end to end; they do not say what the models reach on "
        "the real photos with pretrained weights, and the reference figures are not what this run should reach "
        f"(for that: `data.source: {REFERENCE_SOURCE}` and `model.weights: {REFERENCE_WEIGHTS}`)."
    )


# ---- provenance -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Provenance:
    commit: str | None  # None outside a git repository (or without git)
    dirty: bool | None  # tracked files differ from the commit (untracked files, such as outputs, do not count)
    versions: dict[str, str] = field(default_factory=dict)

    def describe_commit(self) -> str:
        if self.commit is None:
            return "unknown (not a git repository)"
        return f"`{self.commit}` " + ("(tracked files have uncommitted changes)" if self.dirty else "(clean)")


def git_state(project_dir: Path) -> tuple[str | None, bool | None]:
    try:
        head = _git(project_dir, "rev-parse", "HEAD").strip()
        dirty = bool(_git(project_dir, "status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return None, None
    return head, dirty


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30).stdout


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for label, distributions in LIBRARIES.items():
        versions[label] = "not installed"
        for name in distributions:
            try:
                versions[label] = importlib.metadata.version(name)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return versions


def provenance(project_dir: Path) -> Provenance:
    return Provenance(*git_state(project_dir), library_versions())


# ---- figures --------------------------------------------------------------------------------------


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


def plot_curves(curves: pd.DataFrame, title: str, path: Path, marker: float | None = None) -> None:
    """Accuracy above loss, train and validation, against the 1-based epoch (as the reference tutorial)."""
    figure = _new_figure(8, 7)
    figure.suptitle(title)
    for ax, metric in zip(figure.subplots(2, 1, sharex=True), ("accuracy", "loss")):
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


def plot_confusion(scores: Metrics, class_names: list[str], path: Path) -> None:
    """One 2x2 panel per model: rows the true class, columns the predicted one, counts in the cells."""
    figure = _new_figure(4 * len(MODELS), 4)
    for ax, model in zip(figure.subplots(1, len(MODELS)), MODELS):
        c = {k: scores[f"{model}.confusion.{k}"] for k in ("tn", "fp", "fn", "tp")}
        matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
        ax.imshow(matrix, cmap="Blues", vmin=0, vmax=max(int(matrix.max()), 1))
        for (row, col), count in np.ndenumerate(matrix):
            color = "white" if count > matrix.max() / 2 else "black"
            ax.text(col, row, f"{count}", ha="center", va="center", color=color, fontsize=16)
        ax.set_xticks([0, 1], class_names)
        ax.set_yticks([0, 1], class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("actual")
        ax.set_title(f"{model} (accuracy {_fmt(scores[f'{model}.accuracy'])})")
    _save(figure, path)


def plot_roc(rocs: dict[str, pd.DataFrame | None], scores: Metrics, positive: str, path: Path) -> None:
    figure = _new_figure(6, 6)
    ax = figure.subplots()
    for model in MODELS:
        roc = rocs[model]
        if roc is None:
            ax.plot([], [], label=f"{model} (undefined: one class in the test split)")
            continue
        ax.plot(roc["fpr"], roc["tpr"], label=f"{model} (AUC {_fmt(scores[f'{model}.roc_auc'])})")
    ax.plot([0, 1], [0, 1], color="gray", linestyle=":", label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel(f"true positive rate (recall of {positive})")
    ax.set_title("ROC on the test split")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    _save(figure, path)


def load_thumbnail(raw_dir: Path, relative: str) -> Image.Image:
    path = raw_dir / relative
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image).convert("RGB")
    except FileNotFoundError:
        raise missing(path, "download") from None
    except OSError as exc:
        raise PipelineError(f"{path}: cannot be read as an image ({exc}); re-run the download stage") from None
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


# ---- markdown -------------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 4) -> str:
    """Scores as fixed decimals; null (undefined, e.g. ROC AUC with one class) as n/a."""
    return "n/a" if value is None else f"{value:.{digits}f}"


def _count(value: Any) -> str:
    return "n/a" if value is None else f"{int(value):,}"


def _table(header: list[str], rows: list[list[str]], align: str = "") -> list[str]:
    """A markdown table; `align` holds one character per column, l or r (default: first l, rest r)."""
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---" if a == "l" else "---:" for a in align]
    return ["| " + " | ".join(cells) + " |" for cells in [header, rule, *rows]]


def _model_description(model: str, params: dict[str, Any]) -> str:
    if model == "baseline":
        return f"baseline (`{params['baseline']['arch']}`, from scratch)"
    base = params["model"]["base"]
    if model == "transfer":
        return f"transfer (`{base}`, frozen base)"
    return f"finetune (`{base}` from layer {params['model']['fine_tune_at']})"


def models_section(inputs: Inputs) -> list[str]:
    s, p = inputs.scores, inputs.params
    header = ["model", "test accuracy", "F1", "ROC AUC", "parameters", "trainable", "epochs", "train time (s)"]
    header += ["val accuracy", "reference figure (NOT this run)"]
    rows = []
    for m in MODELS:
        t = inputs.training[m]
        rows.append(
            [_model_description(m, p), _fmt(s[f"{m}.accuracy"]), _fmt(s[f"{m}.f1"]), _fmt(s[f"{m}.roc_auc"])]
            + [_count(t["params.total"]), _count(t["params.trainable"]), _count(t["epochs"])]
            + [_fmt(t["seconds"], 1), _fmt(t["val.accuracy"]), f"*{REFERENCE[m]}*"]
        )
    positive = inputs.class_names[1]
    per_class = [
        [m] + [_fmt(s[f"{m}.{c}.{k}"]) for c in inputs.class_names for k in ("precision", "recall")] for m in MODELS
    ]
    return [
        "## Models",
        "",
        comparability_notice(inputs.manifest["source"], str(p["model"]["weights"])),
        "",
        *_table(header, rows, "l" + "r" * 8 + "l"),
        "",
        f"Test scores on {_count(s[f'{MODELS[-1]}.test_images'])} test images at decision threshold "
        f"{s['threshold']} on P({positive}); F1 is that of `{positive}`. Epochs and train time are each "
        "stage's own (fine-tuning's exclude transfer's); val accuracy is the last epoch's.",
        "",
        "*Reference figures are from earlier experiments, not from this run:* seed 002 trained MobileNetV2 "
        f"with ImageNet weights on the real `{REFERENCE_SOURCE}` data (0.9765 test accuracy after transfer, "
        "0.979 after fine-tuning); seed 001's small CNN reached 0.71 val accuracy.",
        "",
        "Per class on the test split:",
        "",
        *_table(["model"] + [f"{c} {k}" for c in inputs.class_names for k in ("precision", "recall")], per_class),
        "",
    ]


def dataset_section(inputs: Inputs) -> list[str]:
    d, manifest, names = inputs.data, inputs.manifest, inputs.class_names
    splits = [
        [split]
        + [_count(d[f"{split}.{c}"]) for c in names]
        + [_count(d[f"{split}.total"]), _count(d[f"duplicates_removed.{split}"])]
        + [_count(d[f"duplicates_within.{split}"])]
        for split in ("train", "val", "test")
    ]
    reasons = sorted(k.removeprefix("skipped.") for k in d.values if k.startswith("skipped.") and k != "skipped.total")
    skipped = [[f"`{r}`", _count(d[f"skipped.{r}"])] for r in reasons if d[f"skipped.{r}"]]
    ignored = [[f"`{k}`", _count(v)] for k, v in sorted(manifest["ignored"].items()) if v]
    lines = [
        "## Dataset",
        "",
        f"Source `{manifest['source']}`: archive `{manifest['archive']}`, {manifest['bytes'] / 1e6:.1f} MB, "
        f"sha256 `{manifest['sha256']}`.",
        "",
        *_table(["split", *names, "total", "duplicates removed", "repeats kept within split"], splits),
        "",
        "A file whose bytes already occur in an earlier split (train, then val, then test) is removed from the "
        "later one; repeats inside one split are kept and counted.",
        "",
    ]
    if skipped:
        lines += [
            f"Skipped as unusable: {_count(d['skipped.total'])} files.",
            "",
            *_table(["reason", "files"], skipped),
        ]
    else:
        lines += ["No file was skipped as unusable."]
    if ignored:
        lines += ["", "Not extracted from the archive:", "", *_table(["reason", "files"], ignored)]
    return lines + [""]


def provenance_section(inputs: Inputs, prov: Provenance) -> list[str]:
    versions = [[f"`{name}`", version] for name, version in prov.versions.items()]
    return [
        "## Provenance",
        "",
        f"- git commit: {prov.describe_commit()}",
        f"- seed: {inputs.params['seed']}",
        f"- data archive sha256: `{inputs.manifest['sha256']}`",
        "",
        *_table(["library", "version"], versions),
        "",
        "<details><summary>params.yaml</summary>",
        "",
        "```yaml",
        inputs.params_text.rstrip("\n"),
        "```",
        "",
        "</details>",
        "",
    ]


def write_report(inputs: Inputs, out_dir: Path, grid_images: int, prov: Provenance) -> str:
    """Draw every figure into out_dir/figures/ and return the markdown that links them."""
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    continued = continue_run(inputs.curves["transfer"], inputs.curves["finetune"])
    plot_curves(
        continued.curves,
        "Transfer learning, then fine-tuning (one continued run)",
        figures / "training_transfer_finetune.png",
        marker=continued.finetune_starts_at,
    )
    baseline = inputs.curves["baseline"].assign(epoch=lambda f: f["step"] + 1)
    plot_curves(
        baseline, f"Baseline ({inputs.params['baseline']['arch']}, from scratch)", figures / "training_baseline.png"
    )
    plot_confusion(inputs.scores, inputs.class_names, figures / "confusion_matrices.png")
    plot_roc(inputs.rocs, inputs.scores, inputs.class_names[1], figures / "roc.png")
    chosen = select_grid(inputs.predictions, grid_images)
    plot_grid(chosen, inputs.raw_dir, inputs.class_names, figures / "test_predictions.png")

    n_mistakes = int(chosen["mistake"].sum())
    all_mistakes = int((inputs.predictions["label"] != inputs.predictions["predicted"]).sum())
    lines = [
        "# Cats vs dogs: run report",
        "",
        *models_section(inputs),
        "## Training curves",
        "",
        f"Transfer learning ({continued.transfer_epochs} epochs, frozen base) and fine-tuning "
        f"({len(continued.curves) - continued.transfer_epochs} epochs) drawn as one run; the dashed line marks the "
        "start of fine-tuning.",
        "",
        "![Accuracy and loss of transfer learning then fine-tuning, training and validation, with a line at the "
        "start of fine-tuning](figures/training_transfer_finetune.png)",
        "",
        "![Accuracy and loss of the baseline, training and validation](figures/training_baseline.png)",
        "",
        "## Test split",
        "",
        "![Confusion matrices of the three models on the test split](figures/confusion_matrices.png)",
        "",
        "![ROC curves of the three models on the test split](figures/roc.png)",
        "",
        "## Predictions of the fine-tuned model",
        "",
        f"{len(chosen)} of {len(inputs.predictions)} test images, {n_mistakes} of them mistakes "
        f"({all_mistakes} mistakes in all). Chosen without randomness: up to half the grid are mistakes, the most "
        "confident first; the rest are correct predictions spread evenly over the test images sorted by path. "
        "Each title is the predicted class and the model's probability for it; mistakes are red, framed, "
        "and name the true class.",
        "",
        "![Test images with predicted class and probability, mistakes in red](figures/test_predictions.png)",
        "",
        *dataset_section(inputs),
        *provenance_section(inputs, prov),
    ]
    return "\n".join(lines)


def referenced_figures(markdown: str) -> list[str]:
    """Relative paths of the images a markdown text shows."""
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", markdown)
