"""evaluate stage: every trained model on the same test split -> metrics/eval.json + evaluation/<model>/.

metrics/eval.json holds flat keys (`finetune.accuracy`, `baseline.roc_auc`, ...) so `dvc metrics show`
puts the models side by side and `dvc metrics diff` compares commits. Per model, evaluation/<model>/
holds predictions.csv (path, label, probability, predicted) and ROC / precision-recall / confusion data
for `dvc plots show`.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from stages.lib import files, heads, params, records, runtime, saving, scoring
from stages.lib.cli import run, stage_parser
from stages.lib.reference import MODELS

PARAMS = ("evaluate.threshold", "evaluate.batch_size")


def predict_split(model: keras.Model, records_dir: Path, batch_size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, labels, class probabilities) over the test split, at the model's own input size."""
    size = model.input_shape[1]
    dataset = records.make_dataset(records_dir, "test", image_size=size, batch_size=batch_size, with_paths=True)
    paths, labels, logits = [], [], []
    for images, batch_labels, batch_paths in dataset:
        logits.append(model(images, training=False).numpy())
        labels.append(batch_labels.numpy())
        paths.extend(p.decode() for p in batch_paths.numpy())
    return paths, np.concatenate(labels), heads.probabilities(np.concatenate(logits))


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = stage_parser(__doc__)
    parser.add_argument("--records", type=Path, required=True, help="data/tfrecords: the test split")
    parser.add_argument("--models", type=Path, required=True, help=f"the folder of {', '.join(MODELS)}.keras")
    parser.add_argument("--out", type=Path, required=True, help="per-model predictions and plot data")
    parser.add_argument("--metrics", type=Path, required=True, help="the metrics JSON to write")
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)
    threshold, batch_size = p.evaluate.threshold, p.evaluate.batch_size

    class_names = records.read_meta(args.records)["class_names"]
    scores: dict[str, float | int | str | None] = {"threshold": threshold}
    with files.replace_dir(args.out) as tmp:
        for name in MODELS:
            model = saving.load_model(args.models / f"{name}.keras", name)
            paths, labels, probabilities = predict_split(model, args.records, batch_size)
            positive = probabilities[:, 1]
            frame = scoring.predictions_frame(paths, labels, positive, threshold)
            (tmp / name).mkdir()
            frame.to_csv(tmp / name / "predictions.csv", index=False, lineterminator="\n")
            scoring.write_plot_data(tmp / name, labels, positive, threshold)
            model_scores = scoring.score(labels, positive, threshold, class_names)
            scores.update({f"{name}.{key}": value for key, value in model_scores.items()})
            print(
                f"evaluate: {name}: accuracy {model_scores['accuracy']:.4f}, f1 {model_scores['f1']:.4f}, "
                f"roc_auc {model_scores['roc_auc']} on {len(labels)} test images"
            )
    files.write_json(args.metrics, scores | runtime.machine())
    return p


if __name__ == "__main__":
    run(main)
