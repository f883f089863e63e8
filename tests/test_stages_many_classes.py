"""Every stage with more than two classes, as dvc.yaml runs them (its commands' arguments), at tiny sizes, on a
local archive whose class folders are named as users name them: `None` (pandas' missing value), `macro` and
`total` (metric aggregates), `café` stored in NFD (macOS) and fullwidth `ｃａｔ`; with a 16-bit PNG, a WebP and a
TIFF among the images. The two-class runs are in each stage's own tests."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import unicodedata
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from stages import audit, baseline, download, encode, evaluate, export, finetune, predict, report, split, transfer
from stages.lib import audit as audit_lists
from stages.lib import file_lists, heads, markdown_parts, prediction, report_inputs, saving
from stages.lib.keys import class_key
from tests.conftest import ROOT, calibrated_base_weights, dvc_args, jpeg_bytes, run_card_snippets, set_params
from tests.test_markdown import referenced_figures

pytestmark = pytest.mark.slow  # trains three tiny models with the real stages

CLASSES = sorted(["None", "café", "macro", "total", "ｃａｔ"])  # as the pipeline names them: NFC, sorted
ODD_FILES = {"scan16.png": "I;16", "photo.webp": "WEBP", "scan.tif": "TIFF"}  # in train/None


def odd_file(name: str, seed: int) -> bytes:
    """A 16-bit grayscale PNG, a WebP or a TIFF photo."""
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    if name.endswith(".png"):
        Image.fromarray(rng.integers(0, 4096, (30, 40), dtype=np.uint16)).save(out, format="PNG")
    else:
        pixels = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(out, format="WEBP" if name.endswith(".webp") else "TIFF")
    return out.getvalue()


def write_archive(path: Path) -> Path:
    """train/<class>/ (8 images each) and validation/<class>/ (10 each) in one top folder; café written in NFD."""
    seed = 0
    with zipfile.ZipFile(path, "w") as archive:
        for folder, count in (("train", 8), ("validation", 10)):
            for name in CLASSES:
                stored = unicodedata.normalize("NFD", name)
                for index in range(count):
                    seed += 1
                    odd = list(ODD_FILES)[index] if folder == "train" and name == "None" and index < 3 else None
                    member = f"mine/{folder}/{stored}/{odd or f'{index}.jpg'}"
                    archive.writestr(member, odd_file(odd, seed) if odd else jpeg_bytes(seed))
    return path


def read(root: Path, relative: str):
    return json.loads((root / relative).read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("many")
    (root / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    (root / "corrections.csv").write_text((ROOT / "corrections.csv").read_text())
    weights = calibrated_base_weights(root / "base.weights.h5")
    set_params(
        root,
        data={"source": str(write_archive(root / "mine.zip"))},
        encode={"image_size": 32, "examples_per_shard": 8},
        baseline={"image_size": 32, "epochs": 2, "batch_size": 8},
        model={"weights": str(weights), "image_size": 32},
        transfer={"epochs": 1, "batch_size": 8},
        finetune={"epochs": 1, "batch_size": 8},
        train={"class_weight": "balanced"},
    )
    before = Path.cwd()
    os.chdir(root)
    try:
        for stage in (download, split, encode, baseline, transfer, finetune, evaluate, audit, export, report):
            name = stage.__name__.rsplit(".", 1)[1]
            out, err = io.StringIO(), io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):  # what a user sees, kept
                stage.main(dvc_args(name))
            (root / f"{name}.stdout").write_text(out.getvalue())
            (root / f"{name}.stderr").write_text(err.getvalue())
        yield root
    finally:
        os.chdir(before)


def test_data_stages_keep_every_class_with_sorted_indices(project: Path):
    data = read(project, "metrics/split.json")
    assert read(project, "metrics/data.json") == {
        f"{split}.total": data[f"{split}.total"] for split in ("train", "val", "test")
    }
    assert data["classes"] == len(CLASSES) and [data[f"train.class.{name}"] for name in CLASSES] == [8] * len(CLASSES)
    assert data["train.total"] == 8 * len(CLASSES) and data["imbalance.train"] == 1.0 and data["skipped.total"] == 0
    assert read(project, "data/tfrecords/meta.json")["class_names"] == CLASSES
    train = pd.read_csv(project / "data" / "splits" / "train.csv", keep_default_na=False)
    kept = dict(zip(train["path"], train["mode"].where(train["mode"] == "I;16", train["format"])))
    assert {name: kept[f"train/None/{name}"] for name in ODD_FILES} == ODD_FILES


@pytest.mark.parametrize("stage", ["baseline", "transfer", "finetune"])
def test_every_model_has_one_logit_per_class(project: Path, stage: str):
    model = saving.load_model(project / "models" / f"{stage}.keras")
    assert model.output_shape == (None, len(CLASSES))
    metrics = read(project, f"metrics/{stage}.json")
    assert 0 <= metrics["val.accuracy"] <= 1 and np.isfinite(metrics["train.loss"])
    if stage == "transfer":
        assert metrics["params.trainable"] == 1281 * len(CLASSES)  # the Dense head on MobileNetV2's 1,280 features


def test_evaluate_scores_every_class(project: Path):
    scores = read(project, "metrics/eval.json")
    test = file_lists.read_split(project / "data" / "splits", "test")
    assert sorted(set(test["label"])) == sorted(CLASSES)  # "None" is a class, not a missing value
    for model in ("baseline", "transfer", "finetune"):
        assert scores[f"{model}.test_images"] == len(test)  # val and test are drawn image by image: about 2 a class
        for name in CLASSES:
            assert 0 <= scores[f"{model}.class.{name}.f1"] <= 1
        for key in ("accuracy", "macro.f1", "weighted.f1", "log_loss", "roc_auc"):
            assert scores[f"{model}.{key}"] is not None
        assert f"{model}.confusion.tp" not in scores and f"{model}.f1" not in scores  # two-class keys only
        frame = report_inputs.read_predictions(project / "evaluation" / model / "predictions.csv")
        assert list(frame.columns) == ["path", "label", "predicted", "confidence", *[f"p_{c}" for c in CLASSES]]
        assert np.allclose(frame[[f"p_{c}" for c in CLASSES]].sum(axis=1), 1.0, atol=1e-5)
        assert (frame["predicted"] == frame[[f"p_{c}" for c in CLASSES]].to_numpy().argmax(axis=1)).all()
    confusion = json.loads(
        (project / "evaluation" / "finetune" / "plots" / "sklearn" / "confusion_matrix.json").read_text()
    )
    assert {row["actual"] for row in confusion} <= set(CLASSES)


def test_export_serves_probabilities_for_every_class(project: Path):
    metrics = read(project, "metrics/export.json")
    assert metrics["saved_model.max_abs_diff"] <= 1e-4 and metrics["saved_model.agreement"] == 1.0
    assert (project / "models" / "export" / "labels.txt").read_text() == "".join(f"{name}\n" for name in CLASSES)
    import tensorflow as tf

    signature = tf.saved_model.load(str(project / "models" / "export" / "saved_model" / "1")).signatures[
        "serving_default"
    ]
    outputs = signature(image=tf.zeros((2, 32, 32, 3)))
    assert set(outputs) == {"logits", "probabilities"} and outputs["probabilities"].shape == (2, len(CLASSES))


def test_the_model_card_names_every_class_and_its_snippets_run(project: Path, tmp_path: Path, capsys):
    export_dir = project / "models" / "export"
    card = (export_dir / "MODEL_CARD.md").read_text()
    metrics = read(project, "metrics/export.json")
    split = read(project, "metrics/split.json")
    for name in CLASSES:
        images = split[class_key(name, prefix="test")]  # the class's test images
        row = rf"^\| {re.escape(markdown_parts.code(name))} \| {images} \| [01]\.\d{{4}} \| "
        assert images >= 1 and re.search(row, card, re.M), name
    assert f"Accuracy {metrics['keras.accuracy']:.4f} on {split['test.total']} test images" in card
    image = sorted((project / "data" / "raw" / "validation" / "café").iterdir())[0]
    printed = run_card_snippets(export_dir, image.read_bytes(), tmp_path)
    assert len(printed) == 5
    assert predict.main([str(image), "--model", str(export_dir / "model.keras"), "--format", "json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert {label for label, _ in printed[:2]} == {row["label"]}  # Keras and the SavedModel: float32, as predict
    assert printed[0][1] == pytest.approx(row["probability"], abs=1e-5)
    assert all(label in CLASSES for label, _ in printed)


def test_predict_gives_the_label_and_the_top_k(project: Path, capsys: pytest.CaptureFixture):
    image = project / "data" / "raw" / "validation" / "café"
    path = sorted(image.iterdir())[0]
    model = project / "models" / "finetune.keras"
    code = predict.main([str(path), "--model", str(model), "--records", str(project / "data" / "tfrecords"),
                         "--top-k", "3", "--format", "json"])  # fmt: skip
    assert code == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row) == {"path", "label", "probability", "label_2", "probability_2", "label_3", "probability_3", "model"}
    assert {row["label"], row["label_2"], row["label_3"]} < set(CLASSES)
    assert row["probability"] >= row["probability_2"] >= row["probability_3"]
    assert row["probability"] + row["probability_2"] + row["probability_3"] <= 1 + 1e-6
    loaded = saving.load_model(model)
    probabilities = heads.probabilities(loaded(prediction.read_image(path, 32)[None], training=False).numpy())[0]
    assert row["label"] == CLASSES[int(probabilities.argmax())]
    assert predict.main([str(path), "--model", str(model), "--classes", "cats,dogs"]) == 2  # 2 names, 5 outputs
    (error,) = capsys.readouterr().err.splitlines()
    assert error.startswith(f"error: {model}: expected 1 output(s) for the 2 classes")


def test_report_shows_the_confusion_and_per_class_scores_of_every_class(project: Path):
    text = (project / "reports" / "report.md").read_text()
    for name in CLASSES:
        assert f"| `{name}` |" in text
    assert "macro F1" in text and "one-vs-rest" in text
    assert "figures/confusion_matrices.png" in text
    with Image.open(project / "reports" / "figures" / "confusion_matrices.png") as image:
        assert image.width >= 800
    assert set(referenced_figures(text)) == {
        p.relative_to(project / "reports").as_posix() for p in (project / "reports").rglob("*.png")
    }


def test_the_audit_says_what_it_could_not_judge(project: Path):
    """Issue 33's edges, in the stage's own words: too few images to whiten, and a weak judge's list as it is."""
    metrics = read(project, "metrics/audit.json")
    printed, warned = (project / "audit.stdout").read_text(), (project / "audit.stderr").read_text()
    assert (
        f"audit: {metrics['audit.images']} images are too few to judge near-duplicates by their features (whitening "
        "needs 128 images); identical files are found by the split stage\n"
    ) in printed
    assert metrics["audit.near_duplicates_judged"] is False
    words = audit_lists.weak_judge_words(metrics["audit.suspects_found"], metrics["audit.suspected_label_errors"])
    weak = (
        "audit: warning: the judge is weak (at chance, or wrong on more than audit.weak_judge_error 0.25 of the "
        f"images), so {words}; a base pretrained on images like yours judges better\n"
    )
    assert (weak in warned) == metrics["audit.judge_weak"]


def test_audit_lists_every_class_by_its_name(project: Path):
    metrics = read(project, "metrics/audit.json")
    data = read(project, "metrics/data.json")
    assert metrics["audit.enabled"] is True
    assert metrics["audit.images"] == sum(data[f"{split}.total"] for split in ("train", "val", "test"))
    tables = audit_lists.read(project / "reports" / "audit")
    issues, outliers = tables[audit_lists.LABEL_ISSUES], tables[audit_lists.OUTLIERS]
    assert set(issues["given"]) | set(issues["suggested"]) | set(outliers["label"]) <= set(CLASSES)
    assert (
        len(issues) == metrics["audit.suspected_label_errors"]
        and "## Audit" in (project / "reports" / "report.md").read_text()
    )
