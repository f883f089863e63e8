"""The model card's text from hand-made records (no training): every class with its test accuracy and interval, the
data and its corrections, flags, the audit, the base and its limits, and load snippets for two and more classes. The
snippets run on real exports in tests/test_serving.py (two classes) and tests/test_stages_many_classes.py (five)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stages.lib import intervals, markdown_parts, model_card, model_origin

HOSTILE = ["None", "a|b", "café", "x`y"]


def inputs(classes: list[str], **changes) -> model_card.CardInputs:
    n = len(classes)
    confusion = np.full((n, n), 1) + np.diag(np.arange(8, 8 + n))  # class i: 8 + i right, n - 1 wrong
    split = {f"{s}.class.{name}": 10 * (i + 1) for s in ("train", "val", "test") for i, name in enumerate(classes)}
    split |= {"train.total": 100, "val.total": 50, "test.total": 20, "skipped.total": 3, "duplicates_removed.val": 1}
    export = {"model": "finetune", "params_read.export.latency_runs": 50, "params_read.export.latency_warmup": 5,
              "machine.cpu": "A CPU", "latency.threads": 2, "latency.cpu_taken_by_others": 0.25}  # fmt: skip
    files = {"keras": "model.keras", "saved_model": "saved_model/1", "tflite_float32": "model_float32.tflite",
             "tflite_dynamic_range": "model_dynamic_range.tflite", "tflite_int8": "model_int8.tflite"}  # fmt: skip
    for index, name in enumerate(files):
        export |= {f"{name}.bytes": 1000 * (index + 1), f"{name}.accuracy": 0.9, f"{name}.latency_ms": 1.5 + index}
        export |= {f"{name}.agreement": 0.99} if name != "keras" else {}
    values = dict(
        model="finetune", reason="export.model: best, the highest val accuracy (...)",
        record={"params_read.model.base": "mobilenet_v2", "fine_tune_at": 100, "params.total": 2_259_265},
        base=model_origin.read("imagenet", "ef" * 32), class_names=classes, size=(96, 96), tta="none",
        manifest={"source": "archives/mine.zip", "archive": "mine.zip", "sha256": "ab" * 32},
        split=split, audit={"audit.enabled": False}, export=export, confusion=confusion, files=files,
    )  # fmt: skip
    return model_card.CardInputs(**(values | changes))


def test_every_class_has_its_test_accuracy_precision_and_intervals():
    card = model_card.write(inputs(HOSTILE))
    confusion = inputs(HOSTILE).confusion
    for index, name in enumerate(HOSTILE):
        images, right, given = confusion[index].sum(), confusion[index, index], confusion[:, index].sum()
        low, high = intervals.wilson(right, images)
        p_low, p_high = intervals.wilson(right, given)
        cell = markdown_parts.code(name)
        row = (f"| {cell} | {images} | {right / images:.4f} | {low:.3f} - {high:.3f} | {right / given:.4f} | "
               f"{p_low:.3f} - {p_high:.3f} |")  # fmt: skip
        assert row in card, row
    assert "| 1 | `` a\\|b `` |" not in card and "| 1 | `a\\|b` |" in card  # a | never ends the cell
    total, right = confusion.sum(), np.trace(confusion)
    low, high = intervals.wilson(right, total)
    assert f"Accuracy {right / total:.4f} on {total} test images (95% interval {low:.3f} - {high:.3f}" in card


def test_the_data_section_shows_corrections_only_when_split_applied_them():
    card = model_card.write(inputs(["cats", "dogs"]))
    assert "| `cats` | 10 | 10 | 10 |" in card and "| **total** | 100 | 50 | 20 |" in card
    assert "`archives/mine.zip`" in card and "ab" * 32 in card and "Corrections" not in card
    # The split stage writes corrections.* for an empty corrections.csv too: all zero, nothing was applied.
    none = inputs(["cats", "dogs"]).split | {f"corrections.{key}": 0 for key in ("rows", *model_card.CORRECTIONS)}
    assert "Corrections" not in model_card.write(inputs(["cats", "dogs"], split=none))
    corrected = none | {"corrections.rows": 6, "corrections.relabelled": 4, "corrections.dropped": 2}
    card = model_card.write(inputs(["cats", "dogs"], split=corrected))
    assert "Corrections applied from `corrections.csv`: 4 relabelled, 2 dropped, 0 kept, 0 unmatched." in card


def test_flags_the_audit_and_the_base():
    export = inputs(["cats", "dogs"]).export | {
        "flagged.baseline": "baseline: val accuracy 0.5 is no better than chance",
        "tflite_int8.flagged_because": "tflite_int8: test accuracy 0.8 is 0.1 below the Keras model's",
    }
    audit = {
        "audit.enabled": True,
        "audit.images": 170,
        "audit.suspected_label_errors": 5,
        "audit.suspected_label_errors.train": 3,
        "audit.suspected_label_errors.val": 1,
        "audit.suspected_label_errors.test": 1,
        "audit.near_duplicates_across_splits": 2,
        "audit.test_images_near_other_splits": 1,
        "audit.near_duplicates_within_splits": 0,
        "audit.outliers": 7,
    }
    card = model_card.write(inputs(["cats", "dogs"], export=export, audit=audit))  # fmt: skip
    assert "- baseline: val accuracy 0.5 is no better than chance" in card
    assert "- tflite_int8: test accuracy 0.8 is 0.1 below the Keras model's" in card
    assert "suspects 5 of a wrong label (3 train, 1 val, 1 test)" in card and "7 outliers" in card
    assert "ImageNet's weights" in card and "1,000 classes" in card
    assert "None: no model at chance level" in model_card.write(inputs(["cats", "dogs"]))
    assert "The audit was off" in model_card.write(inputs(["cats", "dogs"]))
    baseline = model_card.write(inputs(["cats", "dogs"], model="baseline", record={"params_read.baseline.arch": "vgg"}))
    assert "trained from scratch" in baseline and "`vgg`" in baseline and "ImageNet" not in baseline


@pytest.mark.parametrize("classes", [["cats", "dogs"], ["a", "b", "c"]])
def test_load_snippets_are_python_for_the_model_s_head(classes: list[str]):
    card = model_card.write(inputs(classes))
    blocks = re.findall(r"```python\n(.*?)\n```", card, re.S)
    assert len(blocks) == 4 and 'Image.open("photo.jpg")' in blocks[0] and "(96, 96)" in blocks[0]
    for block in blocks:
        compile(block, "snippet", "exec")  # each is valid Python (the real runs: tests/test_serving.py)
    binary = len(classes) == 2
    assert all(('"probability"' in b) == binary and ('"probabilities"' in b) == (not binary) for b in blocks[2:])
    assert "model_float32.tflite`, `model_dynamic_range.tflite`: the same" in card
    assert model_card.write(inputs(classes)) == card  # identical inputs, identical text
