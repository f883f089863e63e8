"""The report stage and its markdown on a small hand-made input tree (no training): text, figures, errors."""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import report as report_stage
from stages.lib import audit, chance, intervals, reference, report_figures, report_inputs, scoring
from stages.lib import markdown as report
from stages.lib.errors import PipelineError
from stages.lib.keys import class_key
from stages.lib.provenance import provenance
from tests.conftest import ROOT, jpeg_bytes, set_params
from tests.test_model_origin import ABOUT

CLASSES = ["cats", "dogs"]
TRANSFER_EPOCHS, FINETUNE_EPOCHS, BASELINE_EPOCHS = 3, 2, 4
# The fine-tuned model's test predictions: (path, label, probability); threshold 0.5.
# Mistakes: cat.3 (p 0.9, confident), dog.6 (p 0.4, hesitant).
PREDICTIONS = [
    ("validation/cats/cat.1.jpg", 0, 0.1),
    ("validation/cats/cat.2.jpg", 0, 0.2),
    ("validation/cats/cat.3.jpg", 0, 0.9),
    ("validation/cats/cat.4.jpg", 0, 0.3),
    ("validation/dogs/dog.5.jpg", 1, 0.8),
    ("validation/dogs/dog.6.jpg", 1, 0.4),
    ("validation/dogs/dog.7.jpg", 1, 0.7),
    ("validation/dogs/dog.8.jpg", 1, 0.95),
]
# Distinctive numbers, so the table can be checked for them.
SCORES = {
    "baseline": {"accuracy": 0.625, "f1": 0.5714, "roc_auc": 0.6875},
    "transfer": {"accuracy": 0.6251, "f1": 0.6667, "roc_auc": None},  # null (one class in the test split): shown as n/a
    "finetune": {"accuracy": 0.75, "f1": 0.75, "roc_auc": 0.8125},
}
# Their 95% intervals (`<key>.low`, `<key>.high`), distinctive too.
INTERVALS = {
    "baseline": {"accuracy": (0.3061, 0.8634), "f1": (0.2171, 0.8152), "macro.f1": (0.2521, 0.8353)},
    "transfer": {"accuracy": (0.3062, 0.8635), "f1": (0.2982, 0.9023), "macro.f1": (0.2622, 0.8454)},
    "finetune": {"accuracy": (0.4093, 0.9286), "f1": (0.3574, 0.9545), "macro.f1": (0.2723, 0.8555)},
}
VAL_INTERVALS = {"baseline": (0.3226, 0.7827), "transfer": (0.4417, 0.8613), "finetune": (0.5703, 0.9344)}
TRAINING = {
    "baseline": {"params.total": 8743041, "params.trainable": 8743041, "seconds": 12.3, "val.accuracy": 0.5625},
    "transfer": {"params.total": 2259265, "params.trainable": 1281, "seconds": 45.6, "val.accuracy": 0.6875},
    "finetune": {"params.total": 2259265, "params.trainable": 1862721, "seconds": 78.9, "val.accuracy": 0.8125},
}


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def write_curves(folder: Path, steps: range) -> None:
    """dvclive's layout: one TSV per metric and split, header `step\\t<name>`."""
    for split in ("train", "eval"):
        (folder / "plots" / "metrics" / split).mkdir(parents=True)
        for name in ("loss", "accuracy"):
            rows = [f"{s}\t{(0.9 - 0.05 * s) if name == 'loss' else (0.5 + 0.04 * s)}" for s in steps]
            (folder / "plots" / "metrics" / split / f"{name}.tsv").write_text(
                "\n".join([f"step\t{name}", *rows]) + "\n"
            )


def many_class_predictions(classes: list[str], per_class: int) -> pd.DataFrame:
    """Test predictions of `per_class` images per class, right for about two in three: path, label, predicted,
    confidence and p_<class> columns, as scoring.predictions_frame writes them."""
    rng = np.random.default_rng(len(classes))
    labels = np.repeat(np.arange(len(classes)), per_class)
    probabilities = rng.dirichlet(np.ones(len(classes)), size=len(labels))
    probabilities[np.arange(len(labels)), labels] += rng.random(len(labels)) < 0.67
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    paths = [f"validation/{classes[label]}/{index}.jpg" for index, label in enumerate(labels)]
    return scoring.predictions_frame(paths, labels, probabilities, 0.5, classes)


def two_class_predictions() -> pd.DataFrame:
    frame = pd.DataFrame(PREDICTIONS, columns=["path", "label", "p_dogs"])
    frame["predicted"] = (frame["p_dogs"] >= 0.5).astype(int)
    frame["confidence"] = frame["p_dogs"].where(frame["predicted"] == 1, 1 - frame["p_dogs"])
    frame["p_cats"] = 1 - frame["p_dogs"]
    return frame[["path", "label", "predicted", "confidence", "p_cats", "p_dogs"]]


def eval_scores(classes: list[str], test_images: int) -> dict:
    out: dict = {"threshold": 0.5, "bootstrap_resamples": 2000}
    for model, scores in SCORES.items():
        ends = INTERVALS[model] if len(classes) == 2 else {"accuracy": INTERVALS[model]["accuracy"],
                                                           "macro.f1": INTERVALS[model]["macro.f1"]}  # fmt: skip
        out |= {
            f"{model}.{key}.{end}": value for key, pair in ends.items() for end, value in zip(("low", "high"), pair)
        }
        if len(classes) == 2:
            out |= {f"{model}.{k}": v for k, v in scores.items()}
            out |= {f"{model}.precision": 0.75, f"{model}.recall": 0.75, f"{model}.average_precision": 0.8}
            out |= {f"{model}.confusion.{k}": v for k, v in {"tn": 3, "fp": 1, "fn": 1, "tp": 3}.items()}
        else:
            out |= {f"{model}.accuracy": scores["accuracy"], f"{model}.roc_auc": scores["roc_auc"]}
        out |= {f"{model}.log_loss": 0.5, f"{model}.test_images": test_images}
        out |= {class_key(c, k, prefix=model): 0.75 for c in classes for k in ("precision", "recall", "f1")}
        out |= {f"{model}.{a}.{k}": 0.7 for a in ("macro", "weighted") for k in ("precision", "recall", "f1")}
    return out


def data_counts(classes: list[str]) -> dict:
    out = {"classes": len(classes), "skipped.total": 2, "skipped.truncated": 1, "skipped.empty": 1}
    out["skipped.decode_error"] = 0
    for split, per_class in (("train", 10), ("val", 6), ("test", 4)):
        out |= {class_key(c, prefix=split): per_class for c in classes} | {f"{split}.total": len(classes) * per_class}
        out |= {f"duplicates_removed.{split}": int(split == "val"), f"duplicates_within.{split}": 0}
    return out


def build_inputs(
    root: Path,
    source: str = "sample",
    weights: str = "none",
    classes: list[str] = CLASSES,
    test_per_class: int = 4,
    chosen: str = "finetune",
    described: dict | None = None,
) -> Path:
    """A consistent project tree with every input of the report stage, written by hand: the two-class PREDICTIONS
    for CLASSES, else `test_per_class` drawn test predictions per class."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "params.yaml", root / "params.yaml")
    set_params(root, data={"source": source}, model={"weights": weights}, report={"grid_images": 6})
    predictions = two_class_predictions() if classes == CLASSES else many_class_predictions(classes, test_per_class)
    raw = root / "data" / "raw"
    for index, path in enumerate(predictions["path"]):
        (raw / path).parent.mkdir(parents=True, exist_ok=True)
        (raw / path).write_bytes(jpeg_bytes(index, size=(48, 36)))
    write_json(
        raw / "manifest.json",
        {
            "source": source,
            **(described or {"archive": "a.zip"}),
            "bytes": 123456,
            "sha256": "ab" * 32,
            "ignored": {},
            "files": dict(reference.DATA_FILES) if source == reference.DATASET else {},
        },  # fmt: skip
    )
    write_json(root / "data" / "tfrecords" / "meta.json", {"class_names": classes, "image_size": 160, "splits": {}})
    write_json(root / "metrics" / "split.json", data_counts(classes))
    write_json(root / "metrics" / "eval.json", eval_scores(classes, len(predictions)))
    export = {"test_images": len(predictions), "keras.bytes": 17_000_000, "min_agreement": 0.95, "model": chosen}
    export |= {"reason": "export.model: best, the highest val accuracy (baseline 0.5625, transfer 0.6875, finetune "
               "0.8125)", "flagged.baseline": "baseline: val accuracy 0.5625 is no better than always answering the "
               "most frequent class (0.5000 of 16 val images)"}  # fmt: skip
    export |= {
        "keras.accuracy": 0.75,
        "keras.latency_ms": 10.7,
        "latency.threads": 2,
        "machine.cpu": "A CPU",
        "latency.cpu_taken_by_others": 0.25,
    }
    export |= {f"params_read.export.{key}": value for key, value in (("max_accuracy_drop", 0.01), ("latency_runs", 50),
                                                                      ("latency_warmup", 5))}  # fmt: skip
    for name, agreement in (("saved_model", 1.0), ("tflite_float32", 1.0), ("tflite_dynamic_range", 0.875),
                            ("tflite_int8", 1.0)):  # fmt: skip
        export |= {f"{name}.agreement": agreement, f"{name}.flagged": int(agreement < 0.95)}
        export |= {f"{name}.bytes": 2_500_000, f"{name}.max_abs_diff": 0.05 if agreement < 1 else 2e-7}
        export |= {f"{name}.accuracy": 0.625 if agreement < 1 else 0.75, f"{name}.latency_ms": 1.25}
        if agreement < 0.95:
            export[f"{name}.flagged_because"] = f"{name}: predicts the Keras model's class on 87.5% of the test images"
    write_json(root / "metrics" / "export.json", export)
    steps = {"baseline": range(BASELINE_EPOCHS), "transfer": range(TRANSFER_EPOCHS)}
    steps["finetune"] = range(TRANSFER_EPOCHS, TRANSFER_EPOCHS + FINETUNE_EPOCHS)  # continues transfer's epochs
    for model, numbers in TRAINING.items():
        numbers = numbers | {"epochs": len(steps[model]), "train.loss": 0.4}
        numbers |= {"val.accuracy.low": VAL_INTERVALS[model][0], "val.accuracy.high": VAL_INTERVALS[model][1]}
        if model == "transfer":
            numbers["weights.sha256"] = "none" if weights == "none" else "ef" * 32
        write_json(root / "metrics" / f"{model}.json", numbers)
        write_curves(root / "dvclive" / model, steps[model])
        (root / "evaluation" / model).mkdir(parents=True)
        predictions.to_csv(root / "evaluation" / model / "predictions.csv", index=False)
    write_audit(root, list(predictions["path"]), classes)
    return root


def write_audit(root: Path, paths: list[str], classes: list[str], enabled: bool = True) -> None:
    """The audit stage's lists and metrics: two suspected label errors, one pair across splits, one outlier."""
    tables = audit.empty_tables()
    if enabled:
        tables[audit.LABEL_ISSUES] = pd.DataFrame(
            {"path": paths[2:4], "split": ["test", "val"], "given": classes[:2], "suggested": classes[1::-1],
             "score": [0.0312, 0.2], "sha256": ["2" * 64, "3" * 64]}
        )  # fmt: skip
        tables[audit.NEAR_DUPLICATES] = pd.DataFrame(
            {"path_a": paths[:1], "split_a": ["train"], "path_b": paths[1:2], "split_b": ["test"], "similarity": [0.97],
             "same_bytes": [False], "sha256_a": ["0" * 64], "sha256_b": ["1" * 64]}
        )  # fmt: skip
        tables[audit.OUTLIERS] = pd.DataFrame(
            {"path": paths[4:5], "split": ["val"], "label": classes[1:2], "score": [0.01], "sha256": ["4" * 64]}
        )
    (root / "reports" / "audit").mkdir(parents=True)
    audit.write(root / "reports" / "audit", tables)
    images = pd.DataFrame({"path": paths, "split": "test", "label": 0, "sha256": paths})
    counts = audit.metrics(
        images, tables, ("train", "val", "test"), folds=5, dimensions=0, judge=None, suspects_found=0,
        near_duplicates_judged=True,
    )  # fmt: skip
    write_json(root / "metrics" / "audit.json", counts if enabled else audit.disabled_metrics(("train", "val", "test")))


def argv(root: Path) -> list[str]:
    return [
        "--params", str(root / "params.yaml"),
        "--metrics", str(root / "metrics"),
        "--dvclive", str(root / "dvclive"),
        "--evaluation", str(root / "evaluation"),
        "--records", str(root / "data" / "tfrecords"),
        "--raw", str(root / "data" / "raw"),
        "--audit", str(root / "reports" / "audit"),
        "--out", str(root / "reports"),
    ]  # fmt: skip


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = build_inputs(tmp_path_factory.mktemp("report"))
    view = report_stage.main(argv(root))
    assert view.read == {"report.grid_images", "audit.show"}
    return root


def markdown(root: Path) -> str:
    return (root / "reports" / "report.md").read_text()


def referenced_figures(text: str) -> list[str]:
    """Relative paths of the images a markdown text shows."""
    return re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", text)


def test_every_referenced_figure_is_a_png(rendered: Path):
    figures = referenced_figures(markdown(rendered))
    assert len(figures) == 6  # training x 2, confusion, predictions, the audit's suspects and pairs
    for figure in figures:
        assert not Path(figure).is_absolute() and figure.startswith("figures/")
        with Image.open(rendered / "reports" / figure) as image:
            assert image.format == "PNG" and image.width >= 300 and image.height >= 300
    on_disk = {p.relative_to(rendered / "reports").as_posix() for p in (rendered / "reports").rglob("*.png")}
    assert on_disk == set(figures)


def model_rows(text: str) -> dict[str, str]:
    return {m: next(line for line in text.splitlines() if line.startswith(f"| {m} (")) for m in reference.MODELS}


def test_model_table_holds_this_runs_numbers(rendered: Path):
    rows = model_rows(markdown(rendered))
    for model, scores in SCORES.items():
        for value in scores.values():
            assert (f" {value:.4f} " if value is not None else " n/a ") in rows[model]
        assert f" {TRAINING[model]['params.total']:,} " in rows[model]
        assert f" {TRAINING[model]['params.trainable']:,} " in rows[model]
        assert f" {TRAINING[model]['seconds']:.1f} " in rows[model]
        assert f" {TRAINING[model]['val.accuracy']:.4f} " in rows[model]


def test_every_accuracy_in_the_model_table_carries_its_interval(rendered: Path):
    text = markdown(rendered)
    rows = model_rows(text)
    for model, scores in SCORES.items():
        for key in ("accuracy", "f1"):
            low, high = INTERVALS[model][key]
            assert f" {scores[key]:.4f} ({low:.3f}-{high:.3f}) |" in rows[model]
        low, high = VAL_INTERVALS[model]
        assert f" {TRAINING[model]['val.accuracy']:.4f} ({low:.3f}-{high:.3f}) |" in rows[model]
    assert "In parentheses, the 95% interval" in text and "2,000 bootstrap resamples" in text


def test_a_run_on_other_data_has_no_reference_column_and_a_one_line_banner(rendered: Path):
    """Seen on the landed main: a user's 10-class run got the cats-vs-dogs figures in its table and a banner of
    three sentences."""
    text = markdown(rendered)
    assert "| reference figure" not in text and "0.9765" not in text and "Reference figures are from" not in text
    (banner,) = [line for line in text.splitlines() if "reference" in line.lower() and line.startswith(">")]
    assert banner == (
        "> Not comparable with the reference figures (the cats-vs-dogs tutorial's, not shown): this run used data "
        "from `sample`; random weights (`model.weights: none`)."
    )


def test_a_run_comparable_with_the_reference_shows_its_figures_labelled(tmp_path: Path):
    root = build_inputs(tmp_path / "reference", source=reference.DATASET, weights="imagenet")
    report_stage.main(argv(root))
    text = markdown(root)
    rows = model_rows(text)
    assert "| reference figure (NOT this run) |" in text and "not from this run" in text
    assert "*0.9765 test accuracy (seed 002)*" in rows["transfer"] and "*0.979 test accuracy" in rows["finetune"]
    assert "*0.71 val accuracy (seed 001, small CNN)*" in rows["baseline"]
    assert "Comparability with the reference figures unknown" in text  # the reference's sha256 are not recorded


def test_the_report_leads_with_the_model_a_user_gets_and_its_flags(tmp_path: Path):
    root = build_inputs(tmp_path / "chosen", chosen="transfer")
    report_stage.main(argv(root))
    text = markdown(root)
    assert text.splitlines()[2].startswith("**The model: `transfer`**, chosen by export.model: best, the highest val")
    assert "> **Warning:** baseline: val accuracy 0.5625 is no better than always answering" in text
    assert "## Predictions of the transfer model" in text and "Most confused by the transfer model" in text
    assert "The transfer model exported for serving (`models/export/`, described in its `MODEL_CARD.md`)" in text


def manifest(source: str, files: dict, sha256: str = "ab" * 32) -> report.Metrics:
    return report.Metrics(
        Path("data/raw/manifest.json"), "download", {"source": source, "files": files, "sha256": sha256}
    )


REAL_COUNTS = dict(reference.DATA_FILES)


def test_comparability_is_judged_by_content_not_by_names(monkeypatch: pytest.MonkeyPatch):
    # A 180-image zip named like the reference, with random weights: not comparable, whatever its name.
    fake = manifest("archives/cats_and_dogs_filtered.zip", {"train/cats": 50, "train/dogs": 50, "validation/cats": 40})
    notice = report.comparability(fake, "none", "mobilenet_v2", 160).notice
    assert "Not comparable" in notice and "data from `archives/cats_and_dogs_filtered.zip`" in notice
    assert "random" in notice
    # The reference's counts under any name, ImageNet's base and size: unknown while the reference hashes are not
    # recorded, and named so, with this run's hashes to record.
    real = manifest("my_download.zip", REAL_COUNTS, sha256="cd" * 32)
    notice = report.comparability(real, "ef" * 32, "mobilenet_v2", 160).notice
    assert notice.startswith("> **Comparability with the reference figures unknown:**")
    assert "cd" * 32 in notice and "ef" * 32 in notice
    monkeypatch.setattr(reference, "DATA_SHA256", "cd" * 32)
    monkeypatch.setattr(reference, "WEIGHTS_SHA256", "ef" * 32)
    assert "fair comparison" in report.comparability(real, "ef" * 32, "mobilenet_v2", 160).notice
    other = report.comparability(real, "00" * 32, "mobilenet_v2", 160).notice
    assert "Not comparable" in other and "other weights than ImageNet's" in other
    assert "`resnet50` at 160 px" in report.comparability(real, "ef" * 32, "resnet50", 160).notice


def test_export_section_shows_size_accuracy_agreement_and_latency_and_flags_with_why(rendered: Path):
    text = markdown(rendered)
    assert "| format | size | test accuracy | agreement | max probability difference | latency (ms) |" in text
    assert "| `keras` (`model.keras`) | 17.0 MB | 0.7500 | (itself) | - | 10.7 |" in text
    assert "| `tflite_dynamic_range` | 2.5 MB | 0.6250 | 87.5% **flagged** | 0.05 | 1.25 |" in text
    assert "| `tflite_int8` | 2.5 MB | 0.7500 | 100.0% | 2e-07 | 1.25 |" in text
    assert "> **Flagged:** tflite_dynamic_range: predicts the Keras model's class on 87.5% of the test images." in text
    assert (
        "on A CPU with 2 threads, while other programs took 25% of its CPU time" in text
        and "median of 50 single-image calls after 5" in text
    )


def test_a_base_pretrained_here_makes_the_reference_figures_not_comparable():
    real = manifest("x.zip", REAL_COUNTS)
    notice = report.comparability(real, "ab" * 32, "mobilenet_v2", 160, pretrained_here=True).notice
    assert "Not comparable" in notice and "pretrained by this project" in notice


def test_dataset_and_provenance_sections(rendered: Path):
    text = markdown(rendered)
    assert "| `cats` | 10 | 6 | 4 |" in text and "| **total** | 20 | 12 | 8 |" in text
    assert "| val | 1 | 0 |" in text and "| test | 0 | 0 |" in text  # duplicates removed, repeats kept
    assert "| `truncated` | 1 |" in text and "decode_error" not in text  # zero reasons are left out
    assert "ab" * 32 in text and "- seed: 42" in text
    assert "grid_images: 6" in text  # params.yaml itself
    assert "git commit: unknown (not a git repository)" in text
    assert "| `keras` |" in text and "| `tensorflow` |" in text
    assert "| baseline | unknown | unknown |" in text  # these hand-made metrics carry no machine.* keys
    assert "6 of 8 test images, 2 of them mistakes (2 mistakes in all)" in text


def test_running_twice_gives_the_same_markdown(rendered: Path):
    first = markdown(rendered)
    report_stage.main(argv(rendered))
    assert markdown(rendered) == first


@pytest.mark.parametrize(
    ("relative", "stage"),
    [
        ("metrics/eval.json", "evaluate"),
        ("metrics/split.json", "split"),
        ("data/raw/manifest.json", "download"),
        ("dvclive/finetune/plots/metrics/eval/loss.tsv", "finetune"),
        ("evaluation/finetune/predictions.csv", "evaluate"),
        ("data/raw/validation/cats/cat.3.jpg", "download"),  # an image the grid shows
        ("metrics/audit.json", "audit"),
        ("reports/audit/near_duplicates.csv", "audit"),
    ],
)
def test_a_missing_input_names_the_file_and_its_stage(tmp_path: Path, relative: str, stage: str):
    root = build_inputs(tmp_path / "project")
    (root / relative).unlink()
    with pytest.raises(PipelineError) as error:
        report_stage.main(argv(root))
    assert str(root / relative) in str(error.value) and f"dvc repro {stage}" in str(error.value)
    # Nothing half-written: the report's own outputs (reports/ also holds the audit stage's lists).
    assert not (root / "reports" / "report.md").exists() and not (root / "reports" / "figures").exists()


HOSTILE_CLASSES = sorted(
    ["None", "NA", "null", "nan", "macro", "weighted", "total", "caf\u00e9", "cafe\u0301", "ｃａｔ", "cat", "a.b",
     "x|y`z", "$x$", "precision", "long " * 40, "猫"]
)  # fmt: skip


def test_a_report_of_hostile_class_names_names_each_class_as_it_is(tmp_path: Path):
    """Seen on the landed main: café in NFC and NFD (and cat beside ｃａｔ) ended in `SyntaxError: duplicate
    argument 'p_café'` and `failed to reproduce 'report'`."""
    root = build_inputs(tmp_path / "hostile", classes=HOSTILE_CLASSES, test_per_class=2)
    report_stage.main(argv(root))
    text = markdown(root)
    per_class = text[text.index("Per class on the test split") :]
    for name in HOSTILE_CLASSES:
        cell = report._code(name)
        assert f"| {cell} | 0.7500 |" in per_class  # the per-class scores row, under the model table
        assert f"| {cell} | 10 | 6 | 4 |" in text  # the dataset counts row
    assert "| ``x\\|y`z`` |" in text  # a | inside a name does not end the cell, a ` does not end the code span
    audit_rows = text[text.index("## Audit") :]
    assert f"| {report._code(HOSTILE_CLASSES[0])} | {report._code(HOSTILE_CLASSES[1])} |" in audit_rows
    assert "shortened in the figures" in text  # the 200-character name
    cat = HOSTILE_CLASSES.index("猫")
    assert "so the figures show them by class index (from 0, the order of the tables): " in text
    assert f"#{cat} is `猫`" in text
    on_disk = {p.relative_to(root / "reports").as_posix() for p in (root / "reports").rglob("*.png")}
    assert on_disk == set(referenced_figures(text))


def test_a_report_of_a_thousand_classes_bounds_its_figures(tmp_path: Path):
    classes = [f"species {i:04d}" for i in range(1000)]
    root = build_inputs(tmp_path / "many", classes=classes, test_per_class=1)
    report_stage.main(argv(root))
    text = markdown(root)
    assert "heat maps by class index" in text and f"figures/{report_figures.FILES['most_confused']}" in text
    with Image.open(root / "reports" / "figures" / "confusion_matrices.png") as image:
        assert image.width * image.height < 2_000_000


def test_credentials_in_data_source_stay_out_of_the_report(tmp_path: Path):
    root = build_inputs(tmp_path / "secret", source="https://user:s3cret@host.example/d.zip?token=t0k")
    report_stage.main(argv(root))
    text = markdown(root)
    assert "s3cret" not in text and "t0k" not in text
    assert "source: https://***@host.example/d.zip?token=***" in text  # params.yaml, as the report shows it


def test_the_audit_section_counts_shows_and_links_the_lists(rendered: Path):
    text = markdown(rendered)
    section = text[text.index("## Audit: images to look at") : text.index("## Dataset")]
    assert "**These are suggestions, not verdicts**" in section and "`dvc repro`" in section
    assert "| suspected label errors | 2 (0 train / 1 val / 1 test) |" in section
    assert "| near-duplicate pairs across splits | 1 |" in section and "| outliers | 1 |" in section
    assert "| `validation/cats/cat.3.jpg` | `test` | `cats` | `dogs` | 0.031 |" in section
    assert "(audit/label_issues.csv)" in section and (rendered / "reports" / "audit" / "label_issues.csv").is_file()
    assert "figures/audit_label_issues.png" in section and "figures/audit_near_duplicates.png" in section


@pytest.mark.parametrize("enabled", [False, True])
def test_an_audit_switched_off_or_shown_as_counts_only_draws_no_grid(tmp_path: Path, enabled: bool):
    root = build_inputs(tmp_path / "project")
    if enabled:
        set_params(root, audit={"show": 0})
    else:
        shutil.rmtree(root / "reports" / "audit")
        write_audit(root, [], CLASSES, enabled=False)
    report_stage.main(argv(root))
    text = markdown(root)
    assert ("| suspected label errors | 2" in text) == enabled
    assert ("The audit is off (`audit.enabled: false`)" in text) != enabled
    assert not any("audit" in figure for figure in referenced_figures(text))
    assert not list((root / "reports" / "figures").glob("audit_*"))


def write_predictions(root: Path, wrong: dict[str, range], images: int) -> None:
    """Two-class test predictions of `images` images for every model, right on all but its `wrong` ones."""
    paths = [f"validation/{CLASSES[i % 2]}/{i}.jpg" for i in range(images)]
    for index, path in enumerate(paths):
        (root / "data" / "raw" / path).parent.mkdir(parents=True, exist_ok=True)
        (root / "data" / "raw" / path).write_bytes(jpeg_bytes(index, size=(48, 36)))
    for model, indices in wrong.items():
        labels = np.arange(images) % 2
        predicted = np.where(np.isin(np.arange(images), list(indices)), 1 - labels, labels)
        p_dogs = np.where(predicted == 1, 0.9, 0.1)
        scoring.predictions_frame(paths, labels, np.stack([1 - p_dogs, p_dogs], axis=1), 0.5, CLASSES).to_csv(
            root / "evaluation" / model / "predictions.csv", index=False
        )


def test_the_report_says_which_differences_between_models_and_runs_are_inside_the_noise(tmp_path: Path):
    root = build_inputs(tmp_path / "noise")
    write_predictions(root, {"baseline": range(20), "transfer": range(3), "finetune": range(0)}, images=100)
    report_stage.main(argv(root))
    text = markdown(root)
    section = text[text.index("### Differences and noise") : text.index("## Training curves")]
    assert "on the same 100 test images" in section
    # finetune gains 3 images over transfer (p = 2 / 2**3): inside; transfer 17 over baseline (p = 2 / 2**17): outside
    assert "| finetune - transfer | +0.0300 | 3 | 0 | 0.250 | inside the noise |" in section
    assert "| transfer - baseline | +0.1700 | 17 | 0 | <0.001 | **outside the noise** |" in section
    assert "| finetune - baseline | +0.2000 | 20 | 0 | <0.001 | **outside the noise** |" in section
    # Two runs: 6 images all one way is the least change outside the noise; 10 images (0.1) stay outside up to
    # the disagreements McNemar's test allows.
    assert "a change smaller than 0.0600 (6 of 100 images) is inside the noise" in section
    assert "(on the 12 val images: 0.5000)" in section  # data_counts: 12 val images
    assert "| 0.0600 | 6 | 6 |" in section
    assert f"| 0.1000 | 10 | {intervals.most_disagreements(10, 100)} |" in section
    assert "transfer and finetune disagree on the fewest test images, 3." in section


def test_on_fewer_test_images_than_the_least_significant_change_no_run_difference_is_outside_the_noise(tmp_path):
    root = build_inputs(tmp_path / "tiny", classes=["a", "b", "c", "d", "e"], test_per_class=1)  # 5 images
    report_stage.main(argv(root))
    text = markdown(root)
    assert "Between two runs on this test split no change is outside the noise: it takes 6 images" in text
    assert "| transfer - baseline | +0.0000 | 0 | 0 | 1.000 | inside the noise |" in text


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        ({"folder": "my photos"}, "Source `archives/my photos`: folder `my photos`, 0.1 MB of files, content sha256 `"),
        (
            {"archive": "d.zip", "archive_sha256": "cd" * 32},
            "Source `archives/my photos`: `d.zip`, 0.1 MB of files, content sha256 `"
            + "ab" * 32
            + "`, archive sha256 `"
            + "cd" * 32
            + "`.",
        ),
    ],
    ids=["folder", "downloaded_archive"],
)
def test_the_dataset_section_names_a_folder_source_and_what_its_hashes_are_of(
    tmp_path: Path, described: dict, expected: str
):
    root = build_inputs(tmp_path / "folder", source="archives/my photos", described=described)
    report_stage.main(argv(root))
    (line,) = [line for line in markdown(root).splitlines() if line.startswith("Source ")]
    assert line.startswith(expected)


def test_transfer_below_the_cnn_beyond_the_noise_is_said_with_its_known_cause(tmp_path: Path):
    """Issue 33: a user's photos offline, transfer 0.409 against the CNN's 0.645, and the report said nothing of it."""
    root = build_inputs(tmp_path / "lost", weights="none")
    write_predictions(root, {"baseline": range(0), "transfer": range(20), "finetune": range(10)}, images=100)
    report_stage.main(argv(root))
    text = markdown(root)
    assert (
        "> **Transfer scores below the CNN trained from scratch** (-0.2000, outside the noise): likely cause: "
        + chance.RANDOM_WEIGHTS
    ) in text
    won = build_inputs(tmp_path / "won", weights="none")
    write_predictions(won, {"baseline": range(20), "transfer": range(0), "finetune": range(0)}, images=100)
    report_stage.main(argv(won))
    assert "Transfer scores below" not in markdown(won)


def test_the_report_says_how_far_to_trust_the_audit_s_judge(tmp_path: Path):
    root = build_inputs(tmp_path / "judge")
    metrics = json.loads((root / "metrics" / "audit.json").read_text())
    judge = {"audit.judge_accuracy": 0.41, "audit.judge_accuracy_low": 0.39, "audit.judge_accuracy_high": 0.43,
             "audit.judge_chance": 0.36, "audit.judge_weak": True, "audit.suspects_found": 653}  # fmt: skip
    write_json(root / "metrics" / "audit.json", metrics | judge)
    report_stage.main(argv(root))
    text = markdown(root)
    assert (
        "is right on 0.410 (0.390-0.430) of the images; always answering the most frequent class would be 0.360" in text
    )
    assert (
        "**It is weak**: most of its 653 suspects are its own mistakes: only its 2 most suspicious are listed" in text
    )
    assert f"[`review.html`](audit/{audit.REVIEW_PAGE})" in text
    strong_but_below = judge | {
        "audit.judge_weak": False,
        "audit.judge_accuracy": 0.7,
        "audit.judge_accuracy_high": 0.72,
    }
    write_json(root / "metrics" / "audit.json", metrics | strong_but_below)
    report_stage.main(argv(root))
    assert "It is below the pipeline's best model on validation (finetune, 0.812)" in markdown(root)


def test_the_markdown_reads_and_writes_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Issue 32: markdown.py drew the audit's grids as a side effect, and read the description of a base pretrained
    here. Now the stage reads every input, then draws, then renders: rendering with every way to open a file closed
    gives the stage's own report, base description included."""
    weights = tmp_path / "pretrained" / "base.weights.h5"
    weights.parent.mkdir()
    weights.write_bytes(b"weights")
    about = ABOUT | {"weights": weights.name, "sha256": "ef" * 32}  # of the bytes build_inputs records
    (weights.parent / "base.json").write_text(json.dumps(about))
    root = build_inputs(tmp_path / "project", weights=str(weights))
    report_stage.main(argv(root))
    args = argv(root)
    paths = report_inputs.InputPaths(*(Path(args[args.index(f"--{name}") + 1]) for name in (
        "metrics", "dvclive", "evaluation", "records", "raw", "params", "audit")))  # fmt: skip
    inputs = report_inputs.read_inputs(paths)
    (tmp_path / "figures").mkdir()
    drawn = report_figures.draw(inputs, tmp_path / "figures", grid_images=6, audit_show=20)
    prov = provenance(root)

    def closed(*args, **kwargs):
        raise AssertionError(f"a file opened while rendering: {args[:1]}")

    for module, name in ((builtins, "open"), (io, "open"), (os, "open")):
        monkeypatch.setattr(module, name, closed)
    text = report.write_report(inputs, drawn, prov, audit_show=20)
    monkeypatch.undo()
    assert "pretrained by `scripts/pretrain_base.py` on a source task of 2 other classes" in text
    assert text == markdown(root)
