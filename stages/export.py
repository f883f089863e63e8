"""export stage: the model a user takes away -> models/export/ (its .keras, TF Serving SavedModel, TFLite float32 and
dynamic range) and metrics/export.json.

Which model: `export.model` (selection.py): `best`, the highest val accuracy of the three (never judged on the
test split), or a stage's name. The stage prints which and why in one line, and a warning for every model at
chance level or more than `export.flag_margin` below the best, with its likely cause where known.

models/export/ holds model.keras (the chosen model as trained: what `predict` uses by default), saved_model/1/ (a
SavedModel with a `serving_default` signature: input `image`, float32 RGB in [0, 255] at the model's size; outputs
as serving.py describes), model_float32.tflite, model_dynamic_range.tflite (int8 weights) and labels.txt (class
names by index). Every format runs on the whole test split next to the Keras model; metrics/export.json holds the
choice and, per format, the largest probability difference, the share of images whose predicted class agrees with
Keras' (`agreement`) and the size in bytes. A float32 format that differs by more than 1e-4 stops the stage and
leaves the previous export in place.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from stages.lib import chance, files, selection, stage_params
from stages.lib.cli import PipelineError, run, stage_parser
from stages.lib.params import Params

PARAMS = ("export.model", "export.flag_margin", "export.min_agreement", "evaluate.tta")
BATCH_SIZE = 64  # images per parity step; does not change any number written


def significant(value: float) -> float:
    """3 significant digits: the metrics file stays readable and diffs stay quiet at float noise level."""
    return float(f"{value:.3g}")


def test_split_images(records_dir: Path, image_size: int):
    from stages.lib import records

    dataset = records.make_dataset(records_dir, "test", image_size=image_size, batch_size=BATCH_SIZE, with_paths=True)
    return (images.numpy() for images, _labels, _paths in dataset)


def validation_scores(models: list[Path], training_metrics: Path) -> tuple[dict[str, selection.Validation], dict]:
    """Each model's val accuracy and loss from its training stage's metrics/<stage>.json, and the likely causes of
    weak models the project knows from them (a random base)."""
    recorded = {path.stem: files.read_metrics(training_metrics / f"{path.stem}.json", path.stem) for path in models}
    scores = {name: selection.Validation(m["val.accuracy"], m["val.loss"]) for name, m in recorded.items()}
    random_base = recorded["transfer"].values.get("weights.sha256") == "none"
    causes = {name: chance.RANDOM_WEIGHTS for name in ("transfer", "finetune")} if random_base else {}
    return scores, causes


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_argument("--model", type=Path, action="append", required=True, help="a model to choose from (repeat)")
    parser.add_argument("--training-metrics", type=Path, required=True, help="the training stages' <model>.json")
    parser.add_argument("--records", type=Path, required=True, help="data/tfrecords: the test split")
    parser.add_output("--out", "the export folder to write")
    parser.add_output("--metrics", "the metrics JSON to write")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    e = p.export
    models = {path.stem: path for path in args.model}  # models/<stage>.keras, in the stages' order
    scores, causes = validation_scores(args.model, args.training_metrics)
    # TensorFlow only now: --help, a bad argument or a bad param answer in a second, not after its 4-5 s import.
    from stages.lib import records, runtime, saving, serving

    meta = records.read_meta(args.records)
    if not meta["splits"].get("test", {}).get("count"):
        raise PipelineError(f"{args.records}: the test split is empty; nothing to check the exports against")
    choice = selection.choose(e.model, scores)
    warnings = selection.flags(scores, meta["splits"]["val"]["per_class"], e.flag_margin, causes)
    print(f"export: the model is {choice.model}: {choice.reason}")
    for warning in warnings.values():
        print(f"export: warning: {warning}")

    chosen = models[choice.model]
    model = serving.in_float32(saving.load_model(chosen, choice.model))  # the formats are float32 (train.precision)
    model = saving.with_test_time_augmentation(model, p.evaluate.tta)  # the exported formats carry it
    size = model.input_shape[1]
    with files.replace_dir(args.out) as tmp:
        shutil.copyfile(chosen, tmp / serving.KERAS_FILE)
        export = serving.export_all(model, tmp, meta["class_names"])
        parity = serving.compare(
            serving.keras_predictor(model), export.predictors, test_split_images(args.records, size)
        )
        serving.check_float_parity(parity.max_abs_diff)  # inside: a failure leaves the previous export in place

    metrics: dict[str, float | int | str] = {"model": choice.model, "reason": choice.reason}
    metrics |= {f"flagged.{name}": warning for name, warning in warnings.items()}
    metrics |= {"test_images": parity.count, "keras.bytes": chosen.stat().st_size, "tta": p.evaluate.tta}
    metrics["min_agreement"] = e.min_agreement
    for name in serving.FORMATS:
        metrics[f"{name}.max_abs_diff"] = significant(parity.max_abs_diff[name])
        metrics[f"{name}.agreement"] = round(parity.agreement[name], 6)
        metrics[f"{name}.flagged"] = int(parity.agreement[name] < e.min_agreement)  # the report says why
        metrics[f"{name}.bytes"] = export.sizes[name]
    files.write_json(args.metrics, metrics | runtime.machine() | stage_params.values_read(p))
    summary = ", ".join(
        f"{name} {parity.max_abs_diff[name]:.2g} ({parity.agreement[name]:.1%} same class)" for name in serving.FORMATS
    )
    print(f"export: {args.out}; max |probability - Keras| on {parity.count} test images: {summary}")
    for name in serving.FORMATS:
        if metrics[f"{name}.flagged"]:
            print(f"export: warning: {name} predicts the Keras model's class on {parity.agreement[name]:.1%} of the "
                  f"test images, below export.min_agreement {e.min_agreement:.1%}")  # fmt: skip
    return p


if __name__ == "__main__":
    run(main)
