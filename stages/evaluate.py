"""evaluate stage: every trained model on the same test split -> metrics/eval.json + evaluation/<model>/.

    python -m stages.evaluate

metrics/eval.json holds flat keys (`finetune.accuracy`, `baseline.roc_auc`, ...) so `dvc metrics show`
puts the models side by side and `dvc metrics diff` compares commits. Per model, evaluation/<model>/
holds predictions.csv (path, label, probability, predicted) and ROC / precision-recall / confusion data
for `dvc plots show`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras
import numpy as np

from stages.lib import (
    atomic,
    evaluation,
    layers,  # noqa: F401  (registers the custom layers that load_model needs)
    params,
    records,
    runtime,
)
from stages.lib.cli import PipelineError, run

PARAMS = ("evaluate.threshold", "evaluate.batch_size")
MODELS = ("baseline", "transfer", "finetune")


def predict_split(model: keras.Model, records_dir: Path, batch_size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(paths, labels, probabilities) over the test split, at the model's own input size."""
    size = model.input_shape[1]
    dataset = records.make_dataset(records_dir, "test", image_size=size, batch_size=batch_size, with_paths=True)
    paths, labels, logits = [], [], []
    for images, batch_labels, batch_paths in dataset:
        logits.append(model(images, training=False).numpy().reshape(-1))
        labels.append(batch_labels.numpy())
        paths.extend(p.decode() for p in batch_paths.numpy())
    return paths, np.concatenate(labels), evaluation.sigmoid(np.concatenate(logits))


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=Path, default=Path("data/tfrecords"))
    parser.add_argument("--models", type=Path, default=Path("models"))
    parser.add_argument("--out", type=Path, default=Path("evaluation"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics/eval.json"))
    parser.add_argument("--params", type=Path, default=params.PARAMS_FILE)
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)
    threshold, batch_size = p.evaluate.threshold, p.evaluate.batch_size

    class_names = records.read_meta(args.records)["class_names"]
    scores: dict[str, float | int | None] = {"threshold": threshold}
    with atomic.replace_dir(args.out) as tmp:
        for name in MODELS:
            path = args.models / f"{name}.keras"
            if not path.is_file():
                raise PipelineError(f"{path}: missing; run the {name} stage first (dvc repro {name})")
            model = keras.models.load_model(path, safe_mode=True, compile=False)  # inference only
            paths, labels, probabilities = predict_split(model, args.records, batch_size)
            frame = evaluation.predictions_frame(paths, labels, probabilities, threshold)
            (tmp / name).mkdir()
            frame.to_csv(tmp / name / "predictions.csv", index=False, lineterminator="\n")
            evaluation.write_plot_data(tmp / name, labels, probabilities, threshold)
            model_scores = evaluation.score(labels, probabilities, threshold, class_names)
            scores.update({f"{name}.{key}": value for key, value in model_scores.items()})
            print(
                f"evaluate: {name}: accuracy {model_scores['accuracy']:.4f}, f1 {model_scores['f1']:.4f}, "
                f"roc_auc {model_scores['roc_auc']} on {len(labels)} test images"
            )
    atomic.write_json(args.metrics, scores | runtime.machine())
    return p


if __name__ == "__main__":
    run(main)
