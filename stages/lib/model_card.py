"""The model card: `models/export/MODEL_CARD.md`, written by the export stage beside the files it describes, so that
what a model is travels with it (the sections of Mitchell et al.'s model cards, as Hugging Face's and Keras' use them).

What the model is and which of the three (and why); its classes; the input it takes; the data it was trained on
(source, content hash, images per class and split, corrections applied); its test scores per class with 95%
intervals; the formats with their size, test accuracy, agreement with Keras and latency; flags; the audit's summary;
its pretrained base and that base's limits; intended use and known limitations; and how to load each format, in code
that tests/test_model_card.py runs. Every number comes from a record of this run: nothing here is measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from stages.lib import model_origin
from stages.lib.intervals import wilson
from stages.lib.keys import class_key
from stages.lib.markdown_parts import code, count, fmt, table

CARD_FILE = "MODEL_CARD.md"
SPLITS = ("train", "val", "test")
CORRECTIONS = ("relabelled", "dropped", "kept", "unmatched")  # corrections.<key> in metrics/split.json, when applied
EXAMPLE_IMAGE = "photo.jpg"  # the file the load snippets classify


@dataclass(frozen=True)
class CardInputs:
    model: str  # baseline, transfer or finetune
    reason: str  # why export chose it (selection.Choice.reason)
    record: Mapping[str, Any]  # its training stage's metrics/<model>.json
    base: model_origin.BaseWeights | None  # what its pretrained base started from (None: the baseline has none)
    class_names: list[str]
    size: tuple[int, int]  # (height, width)
    tta: str  # evaluate.tta, carried by every format
    manifest: Mapping[str, Any]  # data/raw/manifest.json
    split: Mapping[str, Any]  # metrics/split.json
    audit: Mapping[str, Any]  # metrics/audit.json
    export: Mapping[str, Any]  # what export writes to metrics/export.json
    confusion: np.ndarray  # the Keras model's on the test split: true class x predicted class
    files: Mapping[str, str]  # format -> its file (folder) inside the export folder, KERAS first


def what_it_is(model: str, record: Mapping[str, Any]) -> str:
    """One phrase, from the training stage's own record of the params it read."""
    if model == "baseline":
        return f"a CNN trained from scratch (`{record.get('params_read.baseline.arch', 'unknown')}`)"
    base = f"`{record.get('params_read.model.base', 'unknown')}`"
    head = "under a new head (global average pooling, dropout, dense)"
    if model == "transfer":
        return f"the pretrained base {base}, frozen, {head} trained here"
    return f"the pretrained base {base} {head}, then fine-tuned from the base's layer {record.get('fine_tune_at', '?')}"


def _summary(c: CardInputs) -> list[str]:
    names = ", ".join(code(name, table=False) for name in c.class_names)
    return [
        f"# Model card: {len(c.class_names)}-class image classifier ({c.model})",
        "",
        f"An image classifier of {len(c.class_names)} classes ({names}) trained by the imagefolder pipeline. Written "
        "by its export stage beside the model's files; every number below is from this run's records "
        "(`metrics/export.json`, `metrics/split.json`, `metrics/audit.json`, `data/raw/manifest.json`).",
        "",
    ]


def _model_section(c: CardInputs) -> list[str]:
    units = "one logit (its sigmoid is the probability of class 1)" if len(c.class_names) == 2 else (
        f"{len(c.class_names)} logits (softmax: the class probabilities)")  # fmt: skip
    tta = (
        "each image's class probabilities averaged with its mirror image's (`evaluate.tta: flip`), in every format"
        if c.tta == "flip"
        else "none"
    )
    return [
        "## Model",
        "",
        f"- **Which model:** `{c.model}`, one of the three the pipeline trains (baseline from scratch, transfer, "
        f"finetune), chosen by {c.reason}. The test split was not used to choose.",
        f"- **What it is:** {what_it_is(c.model, c.record)}; {count(c.record.get('params.total'))} parameters; "
        f"{units}.",
        f"- **Test-time augmentation:** {tta}.",
        "",
    ]


def _classes_and_input(c: CardInputs) -> list[str]:
    height, width = c.size
    rows = [[str(index), code(name)] for index, name in enumerate(c.class_names)]
    return [
        "## Classes",
        "",
        "Class index i is line i + 1 of `labels.txt`:",
        "",
        *table(["index", "class"], rows, "rl"),
        "",
        "## Input",
        "",
        f"RGB images of {height} x {width} pixels, float32 values in [0, 255], batch first (N x {height} x {width} x "
        "3); the model scales its input itself. The pipeline reads an image file as `imagefolder-predict` does: "
        "EXIF orientation applied, converted to RGB (transparency composited over white, 16-bit images scaled by "
        f"their own range), then squashed, not cropped, to {height} x {width} with Pillow's bilinear resize.",
        "",
    ]


def _data_section(c: CardInputs) -> list[str]:
    m, s = c.manifest, c.split
    sha256 = m.get("sha256")
    digest = f"sha256 `{sha256}`" if isinstance(sha256, str) else "sha256 " + ", ".join(
        f"`{name}` `{value}`" for name, value in sorted((sha256 or {}).items()))  # fmt: skip
    rows = [[code(name)] + [count(s.get(class_key(name, prefix=split))) for split in SPLITS] for name in c.class_names]
    rows.append(["**total**"] + [count(s.get(f"{split}.total")) for split in SPLITS])
    lines = [
        "## Training data",
        "",
        f"Source {code(m.get('source'), table=False)} ({code(m.get('archive'), table=False)}), {digest} "
        "(`data/raw/manifest.json`). The model was trained on train, chosen on val, and scored on test:",
        "",
        *table(["class", "train", "val", "test"], rows),
        "",
        f"Skipped as unusable: {count(s.get('skipped.total', 0))} files; exact duplicates removed across splits: "
        f"{count(sum(s.get(f'duplicates_removed.{split}', 0) for split in SPLITS))} (`metrics/split.json`).",
        "",
    ]
    if s.get("corrections.rows"):  # corrections.csv had rows (split.json counts them, zero or not)
        applied = ", ".join(f"{count(s.get(f'corrections.{key}', 0))} {key}" for key in CORRECTIONS)
        lines += [f"Corrections applied from `corrections.csv`: {applied}.", ""]
    return lines


def _metrics_section(c: CardInputs) -> list[str]:
    confusion = np.asarray(c.confusion)
    total, right = int(confusion.sum()), int(np.trace(confusion))
    low, high = wilson(right, total)
    rows = []
    for index, name in enumerate(c.class_names):
        images, correct, predicted = int(confusion[index].sum()), int(confusion[index, index]), int(
            confusion[:, index].sum())  # fmt: skip
        recall, precision = wilson(correct, images), wilson(correct, predicted)
        rows.append([
            code(name), count(images),
            fmt(correct / images if images else None), f"{recall[0]:.3f} - {recall[1]:.3f}",
            fmt(correct / predicted if predicted else None), f"{precision[0]:.3f} - {precision[1]:.3f}",
        ])  # fmt: skip
    return [
        "## Test metrics",
        "",
        f"Accuracy {fmt(right / total if total else None)} on {count(total)} test images (95% interval "
        f"{low:.3f} - {high:.3f}, Wilson's), the Keras model's, with the most probable class as the prediction "
        "(two classes: class 1 from probability 0.5 on). A class's accuracy is its recall, the share of its test "
        "images given its label; precision is the share of the images given its label that are of it.",
        "",
        *table(["class", "test images", "accuracy", "95% interval", "precision", "95% interval"], rows),
        "",
        "The intervals say how far each number may be from what the same model would score on all such images: "
        "with few test images per class they are wide.",
        "",
    ]


def _formats_section(c: CardInputs) -> list[str]:
    e = c.export
    share = e["latency.cpu_taken_by_others"]
    others = "an unknown share" if share is None else f"{share:.0%}"
    rows = []
    for name, path in c.files.items():
        kept = name == "keras"
        rows.append([
            f"`{name}`", f"`{path}`", count(e[f"{name}.bytes"]), fmt(e[f"{name}.accuracy"]),
            "(itself)" if kept else f"{e[f'{name}.agreement']:.1%}", f"{e[f'{name}.latency_ms']:.3g}",
        ])  # fmt: skip
    return [
        "## Formats",
        "",
        *table(["format", "file", "bytes", "test accuracy", "agreement with Keras", "latency (ms)"], rows, "llrrrr"),
        "",
        "Agreement: the share of test images on which the format predicts the Keras model's class. Latency: the "
        f"median of {e['params_read.export.latency_runs']} calls on one image (Keras: `predict_on_batch`) after "
        f"{e['params_read.export.latency_warmup']} untimed ones, on {e['machine.cpu']} with {e['latency.threads']} "
        f"threads, while other programs took {others} of its CPU time: another CPU, or other programs beside, give "
        "other times. `tflite_int8` computes in 8-bit integers "
        "(weights and activations, calibrated on train images) with float32 input and output; "
        "`tflite_dynamic_range` stores 8-bit weights and computes in float32.",
        "",
    ]


def _flags_section(c: CardInputs) -> list[str]:
    flags = [f"- {c.export[key]}" for key in sorted(c.export) if key.startswith("flagged.")]
    flags += [f"- {c.export[key]}" for key in sorted(c.export) if key.endswith(".flagged_because")]
    none = "None: no model at chance level or far below the best, no format flagged."
    return ["## Flags", "", *(flags or [none]), ""]


def _audit_section(c: CardInputs) -> list[str]:
    a = c.audit
    if not a.get("audit.enabled", False):
        return ["## Audit", "", "The audit was off (`audit.enabled: false`): no image was checked.", ""]
    per_split = ", ".join(f"{count(a.get(f'audit.suspected_label_errors.{s}'))} {s}" for s in SPLITS)
    return [
        "## Audit",
        "",
        f"Of the {count(a.get('audit.images'))} images, the audit (`metrics/audit.json`, lists in `reports/audit/`) "
        f"suspects {count(a.get('audit.suspected_label_errors'))} of a wrong label ({per_split}); it found "
        f"{count(a.get('audit.near_duplicates_across_splits'))} near-duplicate pairs across splits "
        f"({count(a.get('audit.test_images_near_other_splits'))} test images with a near-duplicate in train or val), "
        f"{count(a.get('audit.near_duplicates_within_splits'))} within a split and {count(a.get('audit.outliers'))} "
        "outliers. Suspects are suggestions, not verdicts: nothing was relabelled.",
        "",
    ]


def _base_section(c: CardInputs) -> list[str]:
    if c.model == "baseline" or c.base is None:
        return ["## Pretrained base", "", "None: this model was trained from scratch on the training data alone.", ""]
    if c.base.weights == model_origin.IMAGENET:
        origin = [f"The base starts from ImageNet's weights (sha256 `{c.base.sha256}`).", ""]
    elif c.base.weights == model_origin.RANDOM:
        origin = ["The base starts from random weights (`model.weights: none`).", ""]
    else:
        origin = model_origin.base_origin(c.base, c.class_names)
    return [
        "## Pretrained base",
        "",
        *origin,
        f"**Limits.** {model_origin.base_limits(c.base)}",
        "",
    ]


def _use_section(c: CardInputs) -> list[str]:
    names = ", ".join(code(name, table=False) for name in c.class_names)
    return [
        "## Intended use",
        "",
        f"Sorting images like its training data into {names}: the pipeline's evaluation and a starting point for a "
        "model of your own. Check it on your own images before relying on it (`imagefolder-predict` runs any of "
        "the files here).",
        "",
        "## Known limitations",
        "",
        f"- It always answers one of its {len(c.class_names)} classes: an image of none of them still gets one, "
        "often with a high probability.",
        f"- It has seen only images like those of `{c.manifest.get('source')}`: other cameras, lighting, styles or "
        "subjects can lower its accuracy by more than the intervals above.",
        f"- Its test scores come from {count(int(np.asarray(c.confusion).sum()))} images: see the intervals.",
        "- Images are squashed to a square: a very wide or tall image is distorted.",
        "",
    ]


def load_snippets(c: CardInputs) -> list[tuple[str, str]]:
    """(what it loads, Python code) per format, each to run after the first (which reads EXAMPLE_IMAGE)."""
    height, width = c.size
    binary = len(c.class_names) == 2
    decide = (
        "p = float(p[0])  # the probability of class 1\nprint(labels[int(p >= 0.5)], p)"
        if binary
        else "print(labels[int(p.argmax())], float(p.max()))"
    )
    output = '"probability"' if binary else '"probabilities"'
    image = f"""import numpy as np
from PIL import Image, ImageOps

labels = open("labels.txt", encoding="utf-8").read().splitlines()
image = ImageOps.exif_transpose(Image.open("{EXAMPLE_IMAGE}")).convert("RGB")
image = image.resize(({width}, {height}), Image.Resampling.BILINEAR)  # squashed, not cropped
x = np.asarray(image, dtype=np.float32)[None]  # 1 x {height} x {width} x 3, RGB in [0, 255]"""
    logits = "logit = model(x, training=False).numpy()[0]\np = 1 / (1 + np.exp(-logit))" if binary else (
        "logits = model(x, training=False).numpy()[0]\np = np.exp(logits - logits.max())\np = p / p.sum()")  # fmt: skip
    keras_code = f"""import keras

model = keras.saving.load_model("{c.files["keras"]}")
{logits}
{decide}"""
    saved_model = f"""import tensorflow as tf

serve = tf.saved_model.load("{c.files["saved_model"]}").signatures["serving_default"]
p = serve(image=tf.constant(x))[{output}].numpy()[0]
{decide}"""
    tflite = f"""try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # TensorFlow's copy of the same interpreter
    import tensorflow as tf

    Interpreter = tf.lite.Interpreter

runner = Interpreter(model_path="{c.files["tflite_int8"]}").get_signature_runner("serving_default")
p = runner(image=x)[{output}][0]
{decide}"""
    return [
        ("an image as the model takes it (run first)", image),
        ("Keras", keras_code),
        ("SavedModel (TF Serving serves `saved_model/` as it is)", saved_model),
        ("TFLite (any of the three `.tflite` files)", tflite),
    ]


def _load_section(c: CardInputs) -> list[str]:
    lines = [
        "## How to load",
        "",
        "Each block runs after the first, in the folder of this card, with the image at "
        f"`{EXAMPLE_IMAGE}`; each prints the predicted class and its probability. The first reads the image as "
        "described under Input, for ordinary 8-bit photos; `imagefolder-predict` reads any file the pipeline "
        "reads. The project's tests run every block on models its export stage wrote.",
        "",
    ]
    for title, snippet in load_snippets(c):
        lines += [f"{title[0].upper()}{title[1:]}:", "", "```python", snippet, "```", ""]
    others = ", ".join(f"`{c.files[name]}`" for name in c.files if name.startswith("tflite_") and name != "tflite_int8")
    lines += [
        f"For {others}: the same, with that file's name.",
        "",
        "From the command line, with the project installed:",
        "",
        "```",
        f"imagefolder-predict --model {c.files['tflite_int8']} {EXAMPLE_IMAGE}    # or any other file or folder above",
        "```",
        "",
    ]
    return lines


def write(c: CardInputs) -> str:
    """The card's markdown: identical inputs give identical text."""
    sections = (
        _summary, _model_section, _classes_and_input, _data_section, _metrics_section, _formats_section,
        _flags_section, _audit_section, _base_section, _use_section, _load_section,
    )  # fmt: skip
    return "\n".join(line for section in sections for line in section(c)).rstrip("\n") + "\n"
