"""export stage: the model a user takes away -> models/export/ (its .keras, TF Serving SavedModel, TFLite float32,
dynamic range and full-integer int8, labels.txt, MODEL_CARD.md) and metrics/export.json.

Which model: `export.model` (selection.py): `best`, the highest val accuracy of the three (never judged on the
test split), or a stage's name. The stage prints which and why in one line, and a warning for every model at
chance level or more than `export.flag_margin` below the best, with its likely cause where known.

models/export/ holds model.keras (the chosen model as trained: what `predict` uses by default), saved_model/1/ (a
SavedModel with a `serving_default` signature: input `image`, float32 RGB in [0, 255] at the model's size; outputs
as serving.py describes), model_float32.tflite, model_dynamic_range.tflite (int8 weights), model_int8.tflite
(int8 weights and activations, calibrated on the first `export.representative_images` train images in their stored,
seeded-shuffled order; float32 input and output), labels.txt (class names by index) and MODEL_CARD.md
(model_card.py). Every format runs on the whole test split next to the Keras model; metrics/export.json holds the
choice and, per format, the largest probability difference, the share of images whose predicted class agrees with
Keras' (`agreement`), its test accuracy, its size in bytes and its single-image latency (the median of
`export.latency_runs` calls after `export.latency_warmup`, on the threads recorded as `latency.threads`, with the
share of the machine's CPU time other programs took meanwhile as `latency.cpu_taken_by_others`). A float32
format that differs by more than 1e-4 stops the stage and leaves the previous export in place; a format predicting
Keras' class on fewer than `export.min_agreement` of the test images, or losing more than `export.max_accuracy_drop`
of its test accuracy, is flagged, with why.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stages.lib import files, model_origin, selection, stage_params
from stages.lib.cli import run, stage_parser
from stages.lib.errors import PipelineError, warn
from stages.lib.params import Params

PARAMS = (
    "export.model",
    "export.flag_margin",
    "export.min_agreement",
    "export.max_accuracy_drop",
    "export.representative_images",
    "export.int8_per_channel",
    "export.latency_warmup",
    "export.latency_runs",
    "evaluate.tta",
)
BATCH_SIZE = 64  # images per parity step; does not change any number written


def significant(value: float) -> float:
    """3 significant digits: the metrics file stays readable and diffs stay quiet at float noise level."""
    return float(f"{value:.3g}")


def split_images(records_dir: Path, split: str, image_size: int):
    """(images, labels) batches of a split, in its stored order, as numpy arrays."""
    from stages.lib import records

    dataset = records.make_dataset(records_dir, split, image_size=image_size, batch_size=BATCH_SIZE)
    return ((images.numpy(), labels.numpy()) for images, labels in dataset)


def representative_images(records_dir: Path, image_size: int, count: int):
    """The first `count` train images in their stored order, which the encode stage shuffled with the seed: a
    sample of every class, the same on every run. They calibrate the int8 model; never a test image. Kept as uint8
    (the records' pixels are whole numbers): 200 images at 1024 px are 0.6 GB, not 2.5."""
    import numpy as np

    batches, taken = [], 0
    for images, _labels in split_images(records_dir, "train", image_size):
        batches.append(images[: count - taken].astype(np.uint8))
        taken += len(batches[-1])
        if taken >= count:
            break
    return np.concatenate(batches)


def training_records(models: list[Path], training_metrics: Path) -> dict[str, files.Metrics]:
    return {path.stem: files.read_metrics(training_metrics / f"{path.stem}.json", path.stem) for path in models}


def transfer_base(recorded: dict[str, files.Metrics]) -> model_origin.BaseWeights:
    """The weights the transfer base started from, as the transfer stage recorded them, with their description."""
    transfer = recorded["transfer"].values
    weights = str(transfer.get("params_read.model.weights", "unknown"))
    return model_origin.read(weights, str(transfer.get("weights.sha256", "unknown")))


def validation_scores(
    recorded: dict[str, files.Metrics], base: model_origin.BaseWeights
) -> tuple[dict[str, selection.Validation], dict]:
    """Each model's val accuracy and loss from its training stage's metrics/<stage>.json, and the likely causes of
    weak models the project knows from them (a random base, or one pretrained on drawings)."""
    scores = {name: selection.Validation(m["val.accuracy"], m["val.loss"]) for name, m in recorded.items()}
    cause = model_origin.weak_transfer_cause(base)
    return scores, ({name: cause for name in ("transfer", "finetune")} if cause else {})


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", type=Path, action="append", required=True, help="a model to choose from (repeat)")
    parser.add_argument("--training-metrics", type=Path, required=True, help="the training stages' <model>.json")
    parser.add_argument("--records", type=Path, required=True, help="data/tfrecords: train (calibration) and test")
    parser.add_argument("--raw", type=Path, required=True, help="data/raw: manifest.json, for the model card")
    parser.add_argument("--split-metrics", type=Path, required=True, help="metrics/split.json, for the model card")
    parser.add_argument("--audit-metrics", type=Path, required=True, help="metrics/audit.json, for the model card")
    parser.add_output("--out", "the export folder to write")
    parser.add_output("--metrics", "the metrics JSON to write")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    e = p.export
    models = {path.stem: path for path in args.model}  # models/<stage>.keras, in the stages' order
    recorded = training_records(args.model, args.training_metrics)
    base = transfer_base(recorded)
    scores, causes = validation_scores(recorded, base)
    manifest = files.read_metrics(args.raw / "manifest.json", "download")
    split = files.read_metrics(args.split_metrics, "split")
    audit = files.read_metrics(args.audit_metrics, "audit")
    # TensorFlow only now: --help, a bad argument or a bad param answer in a second, not after its 4-5 s import.
    from stages.lib import model_card, records, runtime, saving, serving

    meta = records.read_meta(args.records)
    if not meta["splits"].get("test", {}).get("count"):
        raise PipelineError(f"{args.records}: the test split is empty; nothing to check the exports against")
    choice = selection.choose(e.model, scores)
    warnings = selection.flags(scores, meta["splits"]["val"]["per_class"], e.flag_margin, causes)
    print(f"export: the model is {choice.model}: {choice.reason}")
    for warning in warnings.values():
        warn("export", warning)

    chosen = models[choice.model]
    model = serving.in_float32(saving.load_model(chosen, choice.model))  # the formats are float32 (train.precision)
    model = saving.with_test_time_augmentation(model, p.evaluate.tta)  # the exported formats carry it
    size = model.input_shape[1]
    with files.replace_dir(args.out) as tmp:
        shutil.copyfile(chosen, tmp / serving.KERAS_FILE)
        calibration = representative_images(args.records, size, e.representative_images)
        export = serving.export_all(model, tmp, meta["class_names"], calibration, e.int8_per_channel)
        keras_predictor = serving.keras_predictor(model)
        parity = serving.compare(keras_predictor, export.predictors, split_images(args.records, "test", size))
        serving.check_float_parity(parity.max_abs_diff)  # inside: a failure leaves the previous export in place
        # Latency one image at a time: each TFLite file in an interpreter of its own (as predict loads it; the
        # parity runs resized theirs to batches of 64), the SavedModel's signature, and the Keras model through
        # Keras' compiled predict_on_batch (an eager call adds Python's overhead per layer: 10x on MobileNetV2). Any
        # image times the same: the first calibration image, already in memory, not a second read of the records.
        image = calibration[0]
        served = {serving.KERAS: model.predict_on_batch, "saved_model": export.predictors["saved_model"]}
        served |= {name: serving.load_served(export.paths[name]).predict for name in serving.TFLITE_FILES}
        others: dict = {}  # other programs on this CPU slow multi-threaded calls: what they took is recorded
        with serving.cpu_taken_by_others(others):
            latency = {name: serving.median_latency_ms(predict, image, e.latency_warmup, e.latency_runs)
                       for name, predict in served.items()}  # fmt: skip
        format_flags = serving.flags(parity, e.min_agreement, e.max_accuracy_drop)

        metrics: dict[str, float | int | str] = {"model": choice.model, "reason": choice.reason}
        metrics |= {f"flagged.{name}": warning for name, warning in warnings.items()}
        metrics |= {"test_images": parity.count, "tta": p.evaluate.tta, "min_agreement": e.min_agreement}
        metrics |= {"keras.bytes": chosen.stat().st_size, "keras.accuracy": round(parity.accuracy(serving.KERAS), 6)}
        metrics |= {"tflite_int8.representative_images": len(calibration), "latency.threads": serving.threads()}
        metrics["latency.cpu_taken_by_others"] = others["share"]
        for name in serving.FORMATS:
            metrics[f"{name}.max_abs_diff"] = significant(parity.max_abs_diff[name])
            metrics[f"{name}.agreement"] = round(parity.agreement[name], 6)
            metrics[f"{name}.accuracy"] = round(parity.accuracy(name), 6)
            metrics[f"{name}.flagged"] = int(name in format_flags)
            metrics[f"{name}.bytes"] = export.sizes[name]
            if name in format_flags:
                metrics[f"{name}.flagged_because"] = format_flags[name]
        metrics |= {f"{name}.latency_ms": significant(ms) for name, ms in latency.items()}
        metrics |= runtime.machine() | stage_params.values_read(p)
        card = model_card.CardInputs(
            model=choice.model,
            reason=choice.reason,
            record=recorded[choice.model].values,
            base=None if choice.model == "baseline" else base,
            class_names=list(meta["class_names"]),
            size=(size, size),
            tta=p.evaluate.tta,
            manifest=manifest.values,
            split=split.values,
            audit=audit.values,
            export=metrics,
            confusion=parity.confusion,
            files={serving.KERAS: serving.KERAS_FILE}
            | {name: path.relative_to(tmp).as_posix() for name, path in export.paths.items()},
        )
        (tmp / model_card.CARD_FILE).write_text(model_card.write(card), encoding="utf-8")
    files.write_json(args.metrics, metrics)
    summary = ", ".join(
        f"{name} {parity.max_abs_diff[name]:.2g} ({parity.agreement[name]:.1%} same class)" for name in serving.FORMATS
    )
    print(f"export: {args.out}; max |probability - Keras| on {parity.count} test images: {summary}")
    sizes = ", ".join(f"{name} {metrics[f'{name}.bytes'] / 1e6:.1f} MB {latency[name]:.3g} ms"
                      for name in (serving.KERAS, *serving.FORMATS))  # fmt: skip
    print(f"export: size and single-image latency ({serving.threads()} threads): {sizes}")
    for reason in format_flags.values():
        warn("export", reason)
    return p


if __name__ == "__main__":
    run(main)
