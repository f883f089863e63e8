"""The report's markdown (`write_report`), from the model a user gets and the model table to the audit, the dataset
counts and the provenance of the run: text alone, from what report_inputs.py read, linking the figures that
report_figures.py drew. It reads and writes no file.

Nothing in the markdown depends on the clock or on dict order: identical inputs give an identical report.md.
Reference figures (reference.py) are quoted beside this run's numbers and labelled as such; when the run used
other data or other weights, the report says plainly that its numbers are not comparable with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from stages.lib import audit, figures, intervals, model_origin, redaction, reference
from stages.lib.files import Metrics
from stages.lib.keys import class_key
from stages.lib.markdown_parts import code as _code
from stages.lib.markdown_parts import count as _count
from stages.lib.markdown_parts import fmt as _fmt
from stages.lib.markdown_parts import table as _table
from stages.lib.markdown_parts import with_interval as _with_interval
from stages.lib.provenance import Provenance
from stages.lib.report_figures import Drawn
from stages.lib.report_inputs import AuditInputs, Inputs


@dataclass(frozen=True)
class Comparability:
    comparable: bool  # the reference figures are shown beside this run's (fair, or not known to differ)
    notice: str  # one blockquote line


def comparability(
    manifest: Metrics, weights_sha256: str, base: str, image_size: int, pretrained_here: bool = False
) -> Comparability:
    """Whether the reference figures apply to this run, judged by content (the archive's class folder counts and
    sha256, the weights' sha256, the base), never by a file name. `pretrained_here`: the weights are described as
    pretrained by this project (base_origin), so they are not ImageNet's."""
    differs, unknown = [], []
    files = manifest.values.get("files")
    if files != reference.DATA_FILES:
        source = _code(redaction.redact(manifest["source"]), table=False)
        differs.append(f"data from {source}")
    elif reference.DATA_SHA256 is None:
        unknown.append(f"the data has the reference's file counts; its sha256 `{manifest['sha256']}` cannot be checked")
    elif manifest["sha256"] != reference.DATA_SHA256:
        differs.append("data with the reference's file counts but another sha256")
    if weights_sha256 == "none":
        differs.append("random weights (`model.weights: none`)")
    elif pretrained_here:
        differs.append("weights pretrained by this project on drawn animals")
    elif (base, image_size) != (reference.BASE, reference.IMAGE_SIZE):
        differs.append(f"the base `{base}` at {image_size} px")
    elif reference.WEIGHTS_SHA256 is None:
        unknown.append(f"the weights' sha256 `{weights_sha256}` cannot be checked")
    elif weights_sha256 != reference.WEIGHTS_SHA256:
        differs.append("other weights than ImageNet's (another sha256)")
    if differs:
        return Comparability(False, "> Not comparable with the reference figures (the cats-vs-dogs tutorial's, not "
                             "shown): this run used " + "; ".join(differs) + ".")  # fmt: skip
    if unknown:
        return Comparability(
            True,
            "> **Comparability with the reference figures unknown:** " + "; ".join(unknown) + ", because the "
            "reference's are not recorded yet (`stages/lib/reference.py`). If these are the real files, record them "
            "there; the figures are then a fair comparison.",
        )
    return Comparability(
        True,
        "> This run used the reference archive and ImageNet weights (checked by sha256), so the reference figures "
        "are a fair comparison (other seeds; the reference's test images differ, see README).",
    )


def _model_description(model: str, params: dict[str, Any], training: Metrics) -> str:
    if model == "baseline":
        return f"baseline (`{params['baseline']['arch']}`, from scratch)"
    base = params["model"]["base"]
    if model == "transfer":
        return f"transfer (`{base}`, frozen base)"
    return f"finetune (`{base}` from layer {training.values.get('fine_tune_at', params['model']['fine_tune_at'])})"


def chosen_model_section(inputs: Inputs) -> list[str]:
    """The model export wrote and predict uses (selection.py), why, and the models flagged as not to trust."""
    e = inputs.export
    flagged = [f"> **Warning:** {e[key]}." for key in sorted(e.values) if key.startswith("flagged.")]
    return [
        f"**The model: {_code(e['model'], table=False)}**, chosen by {e['reason']}. `models/export/` holds it "
        "(`model.keras`, SavedModel, TFLite float32, dynamic range and int8, and its `MODEL_CARD.md`), `predict` "
        "uses it, and the sections below show it.",
        "",
        *(line for warning in flagged for line in (warning, "")),
    ]


def models_section(inputs: Inputs) -> list[str]:
    s, p, names = inputs.scores, inputs.params, inputs.class_names
    pretrained_here = inputs.base.description is not None
    versus = comparability(inputs.manifest, inputs.base.sha256, p["model"]["base"], p["model"]["image_size"],
                           pretrained_here)  # fmt: skip
    binary = len(names) == 2
    header = ["model", "test accuracy", "F1" if binary else "macro F1", "ROC AUC"]
    header += ["parameters", "trainable", "epochs", "train time (s)", "val accuracy"]
    header += ["reference figure (NOT this run)"] if versus.comparable else []
    rows = []
    for m in reference.MODELS:
        t = inputs.training[m]
        rows.append(
            [_model_description(m, p, t), _with_interval(s, f"{m}.accuracy")]
            + [_with_interval(s, f"{m}.{'f1' if binary else 'macro.f1'}"), _fmt(s[f"{m}.roc_auc"])]
            + [_count(t["params.total"]), _count(t["params.trainable"]), _count(t["epochs"])]
            + [_fmt(t["seconds"], 1), _with_interval(t, "val.accuracy")]
            + ([f"*{reference.FIGURES[m]}*"] if versus.comparable else [])
        )
    if binary:
        scores_note = (
            f"at decision threshold {s['threshold']} on the probability of {_code(names[1], table=False)}; F1 is that "
            "class's, and ROC AUC ranks by its probability"
        )
    else:
        scores_note = "(the most probable class is the prediction); ROC AUC is one-vs-rest, averaged over the classes"
        if f"{reference.MODELS[-1]}.top_k_accuracy" in s.values:
            k = s[f"{reference.MODELS[-1]}.top_k"]
            header.insert(2, f"top-{k} accuracy")
            for row, m in zip(rows, reference.MODELS):
                row.insert(2, _with_interval(s, f"{m}.top_k_accuracy"))
    per_class = [[_code(c)] + [_fmt(s[class_key(c, k, prefix=m)]) for m in reference.MODELS for k in ("recall", "f1")]
                 for c in names]  # fmt: skip
    per_class_header = ["class"] + [f"{m} {k}" for m in reference.MODELS for k in ("recall", "f1")]
    align = "l" + "r" * (len(header) - 1 - versus.comparable) + "l" * versus.comparable
    lines = [
        "## Models",
        "",
        versus.notice,
        "",
        *model_origin.base_origin(inputs.base, names),
        *_table(header, rows, align),
        "",
        f"Test scores on {_count(s[f'{reference.MODELS[-1]}.test_images'])} test images {scores_note}. Epochs "
        "and train time are each stage's own (fine-tuning's exclude transfer's); val accuracy is the last epoch's "
        "(the best epoch's with `train.keep_best`), on the val split's images.",
        "",
        "In parentheses, the 95% interval: where the score could be on all images like these, not only on these. "
        "Wilson's for an accuracy; for F1, the middle 95% of the scores of "
        f"{_count(s['bootstrap_resamples'])} bootstrap resamples of the test images (`evaluate.bootstrap_resamples`).",
        "",
    ]
    if versus.comparable:
        lines += [
            "*Reference figures are from earlier experiments, not from this run:* seed 002 trained MobileNetV2 "
            f"with ImageNet weights on the real `{reference.DATASET}` data (two classes), seed 001 the small CNN.",
            "",
        ]
    table = _table(per_class_header, per_class)
    if len(names) > 20:  # a long table reads better folded
        lines += [f"<details><summary>Per class on the test split ({len(names)} classes)</summary>", "",
                  *table, "", "</details>", ""]  # fmt: skip
    else:
        lines += ["Per class on the test split:", "", *table, ""]
    return lines + noise_section(inputs)


def _transfer_lost(inputs: Inputs, transfer_over_baseline: intervals.Comparison) -> list[str]:
    """A line when transfer scores below the CNN trained from scratch beyond the noise: why, where it is known."""
    c = transfer_over_baseline
    if c.difference >= 0 or c.in_noise:
        return []
    cause = model_origin.weak_transfer_cause(inputs.base)
    return [
        f"> **Transfer scores below the CNN trained from scratch** ({c.difference:+.4f}, outside the noise): "
        + (
            f"likely cause: {cause}."
            if cause
            else f"no known cause (`model.weights: {inputs.base.weights}`); check the data."
        ),
        "",
    ]


def noise_section(inputs: Inputs) -> list[str]:
    """Which differences in accuracy are inside the noise: between this run's models, image by image on the test
    split (McNemar's exact test), and between two runs on the same test split, as `dvc metrics diff` shows them."""
    correct = {m: _correct(inputs.predictions[m], inputs.predictions[reference.MODELS[0]]) for m in reference.MODELS}
    images = len(correct[reference.MODELS[0]])
    rows, disagreements = [], {}
    for index, second in enumerate(reference.MODELS):
        for first in reference.MODELS[index + 1 :]:  # the later stage first: what it gains over the earlier
            c = intervals.mcnemar(correct[first], correct[second])
            disagreements[f"{second} and {first}"] = c.first_only + c.second_only
            p_value = "<0.001" if c.p_value < 0.001 else f"{c.p_value:.3f}"
            verdict = "inside the noise" if c.in_noise else "**outside the noise**"
            rows.append([f"{first} - {second}", f"{c.difference:+.4f}", _count(c.first_only), _count(c.second_only),
                         p_value, verdict])  # fmt: skip
    header = ["models", "test accuracy difference", "images only the first gets right", "only the second", "p",
              "the difference is"]  # fmt: skip
    lines = [
        "### Differences and noise",
        "",
        f"Between the models, image by image on the same {_count(images)} test images: only the images one model "
        "gets right and the other wrong tell them apart (McNemar's exact test; outside the noise when p < 0.05).",
        "",
        *_table(header, rows, "lrrrrl"),
        "",
        *_transfer_lost(inputs, intervals.mcnemar(correct["transfer"], correct["baseline"])),
    ]
    floor = intervals.smallest_significant_change()
    if images < floor:
        return lines + [
            f"Between two runs on this test split no change is outside the noise: it takes {floor} images, all "
            f"right in one run and wrong in the other, and there are {_count(images)}.",
            "",
        ]
    changes = [floor] + sorted({round(share * images) for share in RUN_CHANGES if round(share * images) > floor})
    run_rows = [[_fmt(change / images), _count(change), _count(intervals.most_disagreements(change, images))]
                for change in changes[:4]]  # fmt: skip
    val_images = inputs.data.values.get("val.total")
    on_val = f" (on the {_count(val_images)} val images: {_fmt(floor / val_images)})" if val_images else ""
    closest = min(disagreements, key=disagreements.get)
    return lines + [
        "Between two runs on this test split, as `dvc metrics diff` shows a model's test `accuracy` before and "
        f"after: a change smaller than {_fmt(floor / images)} ({floor} of {_count(images)} images) is inside the "
        f"noise whatever the images{on_val}. A larger change is outside the noise only when the two runs disagree "
        "on few images, most of them in its favour:",
        "",
        *_table(["test accuracy change", "images", "outside the noise if the runs disagree on at most"], run_rows),
        "",
        f"For scale: of this run's models, {closest} disagree on the fewest test images, "
        f"{_count(disagreements[closest])}. Two runs' `evaluation/<model>/predictions.csv` give the exact answer "
        '(`scripts/compare_runs.py`; docs/experiments.md, "Is a difference real?").',
        "",
    ]


RUN_CHANGES = (0.01, 0.02, 0.05, 0.1)  # shares of the test images shown as changes in the two-runs table


def _correct(predictions: pd.DataFrame, order: pd.DataFrame) -> np.ndarray:
    """Whether each test image is predicted right, in the image order of `order` (report_inputs checked that every
    model's predictions are of the same images)."""
    right = (predictions["label"] == predictions["predicted"]).to_numpy()
    return pd.Series(right, index=predictions["path"]).loc[order["path"]].to_numpy()


def most_confused(predictions: pd.DataFrame, class_names: list[str], count: int = 5) -> list[tuple[str, str, int]]:
    """The `count` most frequent (true class, predicted class) mistakes, most frequent first (ties by names)."""
    wrong = predictions[predictions["label"] != predictions["predicted"]]
    pairs = wrong.groupby(["label", "predicted"]).size().reset_index(name="n")
    pairs["true"] = [class_names[i] for i in pairs["label"]]
    pairs["predicted_as"] = [class_names[i] for i in pairs["predicted"]]
    pairs = pairs.sort_values(["n", "true", "predicted_as"], ascending=[False, True, True], kind="stable")
    return [(row.true, row.predicted_as, int(row.n)) for row in pairs.head(count).itertuples()]


def confusions_section(inputs: Inputs, drawn: Drawn) -> list[str]:
    final = inputs.export["model"]  # the model a user takes away
    lines = [
        "## Test split",
        "",
        "![Confusion matrices of the three models on the test split, rows the true class, coloured by the share of "
        f"the row]({drawn.links['confusion']})",
        "",
    ]
    if "most_confused" in drawn.links:  # above figures.NAMED_CLASSES
        lines += [
            f"With {len(inputs.class_names)} classes the matrices above are heat maps by class index (the order of "
            f"the per-class table); the {figures.MOST_CONFUSED} classes the {final} model confuses most, by name:",
            "",
            f"![The {final} model's confusion among the {figures.MOST_CONFUSED} classes with the most mistakes]"
            f"({drawn.links['most_confused']})",
            "",
        ]
    if any(len(name) > figures.MAX_LABEL_CHARS for name in inputs.class_names):
        lines += [f"Class names over {figures.MAX_LABEL_CHARS} characters are shortened in the figures (…); the "
                  "tables give them whole.", ""]  # fmt: skip
    undrawn = [(i, name) for i, name in enumerate(inputs.class_names) if not figures.drawable(name)]
    if undrawn:
        listed = ", ".join(f"#{i} is {_code(name, table=False)}" for i, name in undrawn[:30])
        lines += [f"No font installed here draws every character of {len(undrawn)} class name(s), so the figures show "
                  f"them by class index (from 0, the order of the tables): {listed}"
                  + (", ..." if len(undrawn) > 30 else "") + ".", ""]  # fmt: skip
    pairs = most_confused(inputs.predictions[final], inputs.class_names)
    if pairs:
        rows = [[_code(true), _code(predicted), _count(n)] for true, predicted, n in pairs]
        lines += [f"Most confused by the {final} model:", "", *_table(["true class", "predicted as", "images"], rows)]
        lines += [""]
    return lines


def _share(value: float | None) -> str:
    return "an unknown share" if value is None else f"{value:.0%}"


def export_section(inputs: Inputs) -> list[str]:
    """The exported formats beside the Keras model on the test split: size, test accuracy, how often the same class,
    how close, and how fast on one image."""
    e = inputs.export
    formats = [key.removesuffix(".agreement") for key in e.values if key.endswith(".agreement")]
    formats.sort(key=lambda name: -e[f"{name}.bytes"])  # the largest file first
    rows = [["`keras` (`model.keras`)", f"{e['keras.bytes'] / 1e6:.1f} MB", _fmt(e["keras.accuracy"]), "(itself)",
             "-", f"{e['keras.latency_ms']:.3g}"]]  # fmt: skip
    flagged = []
    for name in formats:
        mark = ""
        if e[f"{name}.flagged"]:
            flagged.append(e[f"{name}.flagged_because"])
            mark = " **flagged**"
        rows.append([f"`{name}`", f"{e[f'{name}.bytes'] / 1e6:.1f} MB", _fmt(e[f"{name}.accuracy"]),
                     f"{e[f'{name}.agreement']:.1%}{mark}", f"{e[f'{name}.max_abs_diff']:.2g}",
                     f"{e[f'{name}.latency_ms']:.3g}"])  # fmt: skip
    header = ["format", "size", "test accuracy", "agreement", "max probability difference", "latency (ms)"]
    lines = [
        "## Export",
        "",
        f"The {e['model']} model exported for serving (`models/export/`, described in its `MODEL_CARD.md`), each "
        f"format run on the {_count(e['test_images'])} test images beside the Keras model. Agreement is the share of "
        "images on which the format predicts the same class as the Keras model; a format is flagged below "
        f"`export.min_agreement` ({e['min_agreement']:.1%}), or when its test accuracy is more than "
        f"`export.max_accuracy_drop` ({e['params_read.export.max_accuracy_drop']}) below the Keras model's. Latency "
        f"is the median of {e['params_read.export.latency_runs']} single-image calls after "
        f"{e['params_read.export.latency_warmup']}, on {e['machine.cpu']} with {e['latency.threads']} threads, while "
        f"other programs took {_share(e['latency.cpu_taken_by_others'])} of its CPU time (the Keras model through "
        "`predict_on_batch`).",
        "",
        *_table(header, rows),
        "",
    ]
    if flagged:
        lines += [*(f"> **Flagged:** {reason}." for reason in flagged), "",
                  "Serve a format that is not flagged, or check the flagged one on your own data.", ""]  # fmt: skip
    return lines


def dataset_section(inputs: Inputs) -> list[str]:
    d, manifest, names = inputs.data, inputs.manifest, inputs.class_names
    splits = ("train", "val", "test")
    per_class = [[_code(c)] + [_count(d[class_key(c, prefix=split)]) for split in splits] for c in names]
    per_class.append(["**total**"] + [_count(d[f"{split}.total"]) for split in ("train", "val", "test")])
    duplicates = [
        [split, _count(d[f"duplicates_removed.{split}"]), _count(d[f"duplicates_within.{split}"])]
        for split in ("train", "val", "test")
    ]
    reasons = sorted(k.removeprefix("skipped.") for k in d.values if k.startswith("skipped.") and k != "skipped.total")
    skipped = [[f"`{r}`", _count(d[f"skipped.{r}"])] for r in reasons if d[f"skipped.{r}"]]
    ignored = [[f"`{k}`", _count(v)] for k, v in sorted(manifest["ignored"].items()) if v]
    folder, archive = manifest.values.get("folder"), manifest.values.get("archive")
    what = f"folder {_code(folder, table=False)}" if folder is not None else _code(archive, table=False)
    size = f", {manifest.values['bytes'] / 1e6:.1f} MB of files" if "bytes" in manifest.values else ""
    sha256 = manifest["sha256"]
    digest = (  # a folder's or an archive's: of the files data/raw holds (download.content_sha256)
        f"content sha256 `{sha256}`"
        if isinstance(sha256, str)
        else "files " + ", ".join(f"`{k}` sha256 `{v}`" for k, v in sha256.items())
    )
    if "archive_sha256" in manifest.values:  # a downloaded archive's bytes, what data.sha256 pins
        digest += f", archive sha256 `{manifest.values['archive_sha256']}`"
    counts = _table(["class", "train", "val", "test"], per_class)
    imbalance = d.values.get("imbalance.train")
    lines = [
        "## Dataset",
        "",
        f"Source {_code(redaction.redact(manifest['source']), table=False)}: {what}{size}, {digest}.",
        "",
        f"{len(names)} classes"
        + (f"; the largest train class has {imbalance}x the images of the smallest" if imbalance else "")
        + ".",
        "",
        *(
            counts
            if len(names) <= 20
            else ["<details><summary>Images per class and split</summary>", "", *counts, "", "</details>"]
        ),
        "",
        *_table(["split", "duplicates removed", "repeats kept within split"], duplicates),
        "",
        "A file whose bytes already occur under the same class in an earlier split (train, then val, then test) is "
        "removed from the later one; repeats inside one split are kept and counted. The same bytes under two classes "
        "are a label conflict: every copy is skipped (`label_conflict`).",
        "",
    ]
    if skipped:
        lines += [
            f"Skipped: {_count(d['skipped.total'])} files, each named with its reason in `data/splits/skipped.csv`.",
            "",
            *_table(["reason", "files"], skipped),
        ]
    else:
        lines += ["No file was skipped."]
    if ignored:
        lines += ["", "Not extracted from the archive:", "", *_table(["reason", "files"], ignored)]
    return lines + [""]


def provenance_section(inputs: Inputs, prov: Provenance) -> list[str]:
    versions = [[f"`{name}`", version] for name, version in prov.versions.items()]
    machines = [
        [
            m,
            {1: "on", 0: "off"}.get(t.values.get("machine.onednn"), "unknown"),
            str(t.values.get("machine.cpu", "unknown")),
        ]
        + [f"`{t.values.get('machine.cpu_features', 'unknown')}`"]
        for m, t in inputs.training.items()
    ]
    return [
        "## Provenance",
        "",
        f"- git commit: {prov.describe_commit()}",
        f"- seed: {inputs.params['seed']}",
        f"- data sha256: `{inputs.manifest['sha256']}`",
        f"- this report was made on: {prov.cpu} (`{' '.join(prov.cpu_features) or 'unknown'}`)",
        "",
        "Identical numbers hold per machine configuration (README, Determinism); each training stage recorded its own:",
        "",
        *_table(["stage", "oneDNN", "CPU", "CPU features"], machines, "llll"),
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


# ---- audit section ---------------------------------------------------------------------------------

AUDIT_FOLDER = "audit"  # the audit stage's lists beside report.md (reports/audit), linked by relative path


def _audit_counts(m: Metrics) -> list[str]:
    per_split = " / ".join(f"{_count(m[f'audit.suspected_label_errors.{s}'])} {s}" for s in ("train", "val", "test"))
    rows = [
        ["suspected label errors", f"{_count(m['audit.suspected_label_errors'])} ({per_split})"],
        ["near-duplicate pairs across splits", _count(m["audit.near_duplicates_across_splits"])],
        ["test images with a near-duplicate in train or val", _count(m["audit.test_images_near_other_splits"])],
        ["near-duplicate pairs within a split", _count(m["audit.near_duplicates_within_splits"])],
        ["of those, identical files", _count(m["audit.identical_files_within_splits"])],
        ["outliers", _count(m["audit.outliers"])],
        ["label conflicts (one image under several classes; every copy left out of the splits)",
         _count(m.values.get("audit.label_conflicts", 0))],
        ["reviewed as right in corrections.csv (keep), not listed again", _count(m.values.get("audit.reviewed", 0))],
    ]  # fmt: skip
    if m.values.get("audit.near_duplicates_judged") is False:
        rows[1:5] = [["near-duplicates", "too few images to judge by their features (no pair listed)"]]
    return _table(["finding", "images or pairs"], rows)


def _judge_lines(m: Metrics, best: tuple[str, float] | None) -> list[str]:
    """How far to trust the suspects: the judge's out-of-fold accuracy beside chance and beside the best model."""
    accuracy = m.values.get("audit.judge_accuracy")
    if accuracy is None:
        return []
    line = (
        f"The audit's judge (a linear classifier and a vote of the nearest images, on the frozen base's features, "
        f"out of fold) is right on {accuracy:.3f} ({m['audit.judge_accuracy_low']:.3f}-"
        f"{m['audit.judge_accuracy_high']:.3f}) of the images; always answering the most frequent class would be "
        f"{m['audit.judge_chance']:.3f}."
    )
    if m["audit.judge_weak"]:
        line += (
            f" **It is weak**: {audit.weak_judge_words(m['audit.suspects_found'], m['audit.suspected_label_errors'])}; "
            "a base pretrained on images like these judges better."
        )
    elif best is not None and m["audit.judge_accuracy_high"] < best[1]:
        line += (
            f" It is below the pipeline's best model on validation ({best[0]}, {best[1]:.3f}): its suspects are weaker "
            "evidence than that model's mistakes would be."
        )
    return [line, ""]


def _audit_list(frame: pd.DataFrame, columns: dict[str, str], show: int) -> list[str]:
    """The first `show` rows of a list as a table: {column: header}; text in code spans, numbers to 3 places."""
    rows = [
        [f"{value:.3f}" if isinstance(value, float) else _code(value) for value in row]
        for row in frame[list(columns)].head(show).itertuples(index=False)
    ]
    return _table(list(columns.values()), rows, "l" * (len(columns) - 1) + "r")


def best_on_validation(inputs: Inputs) -> tuple[str, float] | None:
    """The model with the highest val accuracy the training stages recorded, and that accuracy."""
    scores = {m: inputs.training[m].values.get("val.accuracy") for m in reference.MODELS}
    scores = {m: accuracy for m, accuracy in scores.items() if accuracy is not None}
    return max(scores.items(), key=lambda item: item[1]) if scores else None


def audit_section(
    audit_inputs: AuditInputs, drawn: Drawn, show: int, best: tuple[str, float] | None = None
) -> list[str]:
    """Counts and how far to trust them (the judge beside chance and beside `best`, the best model's name and val
    accuracy), then the most suspicious of each list (with the grids of images report_figures drew for the label
    issues and the near-duplicate pairs): a suggestion of what to look at, never a verdict."""
    m, tables = audit_inputs.metrics, audit_inputs.tables
    lines = ["## Audit: images to look at", ""]
    if not m["audit.enabled"]:
        return lines + ["The audit is off (`audit.enabled: false`): no image was checked.", ""]
    issues, pairs, outliers = (tables[name] for name in (audit.LABEL_ISSUES, audit.NEAR_DUPLICATES, audit.OUTLIERS))
    listed = (audit.LABEL_ISSUES, audit.NEAR_DUPLICATES, audit.OUTLIERS, audit.LABEL_CONFLICTS)
    links = ", ".join(f"[`{name}`]({AUDIT_FOLDER}/{name})" for name in listed)
    lines += [
        f"The frozen base's features of all {_count(m['audit.images'])} images of train, val and test, checked for "
        f"labels that disagree with the images ({m['audit.folds']}-fold out-of-fold probabilities, cleanlab's "
        "confident learning), near-duplicates within and across splits, and outliers. **These are suggestions, "
        "not verdicts**: nothing was moved or relabelled. Look at each image on "
        f"[`review.html`]({AUDIT_FOLDER}/{audit.REVIEW_PAGE}) (accept the suggestion, relabel, drop or keep; Save "
        "gives the rows for `corrections.csv`: `imagefolder-review --merge`), then run `dvc repro`: split applies "
        f"`corrections.csv`, and no image changes split. The full lists: {links}.",
        "",
        *_judge_lines(m, best),
        *_audit_counts(m),
        "",
    ]
    if "label_issues" in drawn.links:  # the first `show` of them
        shown = issues.head(show)
        lines += [
            f"The {len(shown)} most suspicious labels (of {len(issues)}), lowest label quality first (the out-of-fold "
            "probability of the given label):",
            "",
            f"![Suspected label errors with given and suggested labels]({drawn.links['label_issues']})",
            "",
            *_audit_list(
                issues,
                {"path": "image", "split": "split", "given": "given", "suggested": "suggested", "score": "score"},
                show,
            ),  # fmt: skip
            "",
        ]
    if "near_duplicates" in drawn.links:
        shown = pairs.head(show)
        lines += [
            f"The {len(shown)} closest near-duplicate pairs (of {len(pairs)}), pairs across splits first (red): a test "
            "image nearly the same as a train image is scored on what the model has seen.",
            "",
            f"![Near-duplicate pairs side by side, with their similarity]({drawn.links['near_duplicates']})",
            "",
        ]
    if show and len(outliers):
        lines += [
            f"The {min(show, len(outliers))} most atypical images (of {len(outliers)} outliers), lowest score first:",
            "",
            *_audit_list(outliers, {"path": "image", "split": "split", "label": "label", "score": "score"}, show),
            "",
        ]
    return lines


def write_report(inputs: Inputs, drawn: Drawn, prov: Provenance, audit_show: int) -> str:
    """The report's markdown, linking the figures `drawn` (report_figures.draw) holds."""
    continued, chosen = drawn.continued, drawn.grid
    grid_model = inputs.export["model"]  # the model a user takes away, whose predictions the grid shows
    predictions = inputs.predictions[grid_model]
    n_mistakes = int(chosen["mistake"].sum())
    all_mistakes = int((predictions["label"] != predictions["predicted"]).sum())
    lines = [
        "# Run report",
        "",
        *chosen_model_section(inputs),
        *models_section(inputs),
        "## Training curves",
        "",
        f"Transfer learning ({continued.transfer_epochs} epochs, frozen base) and fine-tuning "
        f"({len(continued.curves) - continued.transfer_epochs} epochs) drawn as one run; the dashed line marks the "
        "start of fine-tuning. `dvc plots show` draws the same logs per stage, and the ROC and precision-recall "
        "curves of the test split.",
        "",
        "![Accuracy and loss of transfer learning then fine-tuning, training and validation, with a line at the "
        f"start of fine-tuning]({drawn.links['transfer_finetune']})",
        "",
        f"![Accuracy and loss of the baseline, training and validation]({drawn.links['baseline']})",
        "",
        *confusions_section(inputs, drawn),
        f"## Predictions of the {grid_model} model",
        "",
        f"{len(chosen)} of {len(predictions)} test images, {n_mistakes} of them mistakes "
        f"({all_mistakes} mistakes in all). Chosen without randomness: up to half the grid are mistakes, the most "
        "confident first; the rest are correct predictions spread evenly over the test images sorted by path. "
        "Each title is the predicted class and the model's probability for it; mistakes are red, framed, "
        "and name the true class.",
        "",
        f"![Test images with predicted class and probability, mistakes in red]({drawn.links['predictions']})",
        "",
        *export_section(inputs),
        *audit_section(inputs.audit, drawn, audit_show, best_on_validation(inputs)),
        *dataset_section(inputs),
        *provenance_section(inputs, prov),
    ]
    return "\n".join(lines)
