"""evaluate stage: every trained model on the same test split -> metrics/eval.json + evaluation/<model>/.

Per model (named after its file): metrics/test/<model>.json holds the headline scores (scoring.headline: one row
per model in `dvc metrics show`, with `ci`, half its accuracy's 95% interval), and evaluation/<model>/ holds
predictions.csv (per image: label and prediction, which the report compares model against model) and the
confusion, ROC and precision-recall data for `dvc plots show` (more than two classes: one-vs-rest,
micro-averaged). metrics/eval.json
holds every score of every model as flat keys (`finetune.accuracy`, `baseline.class.dogs.f1`, ...; scoring.py
lists them), under the names of older commits (`dvc metrics diff --targets metrics/eval.json`), and the 95% intervals
of the accuracies and F1 as `<key>.low` / `<key>.high` (F1's by a bootstrap of evaluate.bootstrap_resamples resamples
drawn from `seed`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stages.lib import files, stage_params
from stages.lib.cli import run, stage_parser
from stages.lib.errors import PipelineError
from stages.lib.params import Params

PARAMS = (
    "seed",
    "evaluate.threshold",
    "evaluate.batch_size",
    "evaluate.top_k",
    "evaluate.tta",
    "evaluate.bootstrap_resamples",
)


def predict_split(model, records_dir: Path, batch_size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, labels, class probabilities) over the test split, at the model's own input size."""
    from stages.lib import heads, records

    size = model.input_shape[1]
    dataset = records.make_dataset(records_dir, "test", image_size=size, batch_size=batch_size, with_paths=True)
    paths, labels, logits = [], [], []
    for images, batch_labels, batch_paths in dataset:
        logits.append(model(images, training=False).numpy())
        labels.append(batch_labels.numpy())
        paths.extend(p.decode() for p in batch_paths.numpy())
    return paths, np.concatenate(labels), heads.probabilities(np.concatenate(logits))


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_argument("--records", type=Path, required=True, help="data/tfrecords: the test split")
    parser.add_argument("--model", type=Path, action="append", required=True, help="a model to score (repeat)")
    parser.add_output("--out", "per-model predictions and plot data")
    parser.add_output("--metrics", "the folder of headline <model>.json to write")
    parser.add_output("--details", "the JSON of every score to write")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    e = p.evaluate
    # TensorFlow only now: --help, a bad argument or a bad param answer in a second, not after its 4-5 s import.
    from stages.lib import heads, records, runtime, saving, scoring

    class_names = records.read_meta(args.records)["class_names"]
    scores: dict[str, float | int | str | None] = {
        "threshold": e.threshold, "tta": e.tta, "bootstrap_resamples": e.bootstrap_resamples
    }  # fmt: skip
    headlines: dict[str, dict] = {}
    with files.replace_dir(args.out) as tmp:
        for path in args.model:
            name = path.stem  # models/<stage>.keras: the stage that trains it, and its name in the metrics
            model = saving.load_model(path, name)
            if model.output_shape[-1] != heads.units(len(class_names)):
                raise PipelineError(
                    f"{path}: {model.output_shape[-1]} outputs, but the records have {len(class_names)} classes "
                    f"({heads.units(len(class_names))} outputs); re-run the {name} stage"
                )
            model = saving.with_test_time_augmentation(model, e.tta)
            paths, labels, probabilities = predict_split(model, args.records, e.batch_size)
            frame = scoring.predictions_frame(paths, labels, probabilities, e.threshold, class_names)
            (tmp / name).mkdir()
            frame.to_csv(tmp / name / "predictions.csv", index=False, lineterminator="\n")
            scoring.write_plot_data(tmp / name, labels, probabilities, e.threshold, class_names)
            model_scores = scoring.score(labels, probabilities, e.threshold, class_names, e.top_k)
            model_scores |= scoring.score_intervals(
                labels, probabilities, e.threshold, class_names, e.top_k, e.bootstrap_resamples, p.seed
            )
            scores.update({f"{name}.{key}": value for key, value in model_scores.items()})
            headlines[name] = scoring.headline(model_scores)
            f1 = "f1" if "f1" in model_scores else "macro.f1"  # two classes: class 1's, as the report and the demo
            print(
                f"evaluate: {name}: accuracy {model_scores['accuracy']:.4f} (95% interval "
                f"{model_scores['accuracy.low']:.3f}-{model_scores['accuracy.high']:.3f}), {f1} "
                f"{model_scores[f1]:.4f}, roc_auc {model_scores['roc_auc']} on {len(labels)} test images"
            )
    files.write_json(args.details, scores | runtime.machine() | stage_params.values_read(p))
    for name, headline in headlines.items():
        files.write_json(args.metrics / f"{name}.json", headline)
    return p


if __name__ == "__main__":
    run(main)
