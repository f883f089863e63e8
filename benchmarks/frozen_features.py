"""The transfer and finetune stages with and without running their frozen part over the val images only once
(transfer.cache_features, finetune.cache_features), augmentation on as in the reference, against the model's
own step rate on in-memory tensors; and transfer on the features of K augmented views of each train image,
computed once (transfer.augmented_views).

    python -m benchmarks.frozen_features [--train-per-class 200] [--validation-per-class 100] [--epochs 3]
                                         [--views 2]

Runs the real stages (their `main`, MobileNetV2 at 160 px, random weights: the step cost does not depend on
their values) on the sample data, alternating the two settings, best of two each. Prints each stage's seconds
(fit plus the one pass of the frozen part) per setting, and the floor: the same epochs of training steps alone,
on batches already in memory, with no validation at all. The ratio to that floor is what is left to gain.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import keras
import yaml

from benchmarks.common import encode, prepare_raw, recorded
from stages import finetune, transfer
from stages.lib import models, records
from stages.lib.augment import build_augmentation
from stages.lib.params import AugmentParams

ROOT = Path(__file__).resolve().parents[1]
SIZE, BATCH = 160, 32


def write_params(path: Path, epochs: int, cache_features: bool, views: int) -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["model"].update(weights="none", image_size=SIZE)
    for stage in ("transfer", "finetune"):
        raw[stage].update(epochs=epochs, batch_size=BATCH, cache_features=cache_features)
    raw["transfer"]["augmented_views"] = views
    path.write_text(yaml.safe_dump(raw))


def stage_seconds(tmp: Path, stage: str, epochs: int, cache_features: bool, views: int = 0) -> float:
    """One run of the stage; its training seconds plus the feature passes, as its metrics record them."""
    write_params(tmp / "params.yaml", epochs, cache_features, views)
    for leftover in ("logs", "checkpoints"):
        shutil.rmtree(tmp / leftover, ignore_errors=True)
    argv = ["--params", str(tmp / "params.yaml"), "--records", str(tmp / "records"), "--logs", str(tmp / "logs"),
            "--metrics", str(tmp / "m.json"), "--val-metrics", str(tmp / "val.json"),
            "--checkpoints", str(tmp / "checkpoints")]  # fmt: skip
    if stage == "transfer":
        transfer.main([*argv, "--model", str(tmp / "transfer.keras")])
    else:
        finetune.main([*argv, "--model", str(tmp / "finetune.keras"), "--transfer-model", str(tmp / "transfer.keras")])
    metrics = json.loads((tmp / "m.json").read_text())
    return metrics["seconds"] + metrics.get("features_seconds", 0.0)


def floor_seconds(tmp: Path, stage: str, epochs: int) -> float:
    """Seconds of `epochs` epochs of the stage's training steps on in-memory batches, no validation."""
    augment = AugmentParams("horizontal", 0.1, 0.0, 0.0, 0.0, 0.0)
    base = models.build_base("mobilenet_v2", SIZE, None)
    model = models.build_transfer_model(base, "mobilenet_v2", SIZE, 2, 0.2, build_augmentation(augment, 0))
    if stage == "finetune":
        models.unfreeze_from(model, 100, "mobilenet_v2")
    optimizer = keras.optimizers.Adam(3e-4) if stage == "transfer" else keras.optimizers.RMSprop(3e-5)
    model.compile(optimizer, keras.losses.BinaryCrossentropy(from_logits=True))
    batches = records.make_dataset(tmp / "records", "train", image_size=SIZE, batch_size=BATCH).cache()
    model.fit(batches, epochs=1, verbose=0)  # fills the cache and traces the step
    start = time.perf_counter()
    model.fit(batches, epochs=epochs, verbose=0)
    return time.perf_counter() - start


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--validation-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--views", type=int, default=2, help="transfer.augmented_views for the third setting")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw, frames = prepare_raw(tmp, args.train_per_class, args.validation_per_class)
        encode(raw, frames, tmp / "records", SIZE)
        count, val_count = len(frames["train"]), len(frames["val"])
        lines = []
        for stage in ("transfer", "finetune"):  # finetune starts from the last transfer model written
            settings = {"val through the whole model (before)": (False, 0), "frozen part once": (True, 0)}
            if stage == "transfer":
                settings[f"features of {args.views} augmented views once"] = (True, args.views)
            best = dict.fromkeys(settings, float("inf"))
            for _ in range(2):
                for label, (cache_features, views) in settings.items():
                    seconds = stage_seconds(tmp, stage, args.epochs, cache_features, views)
                    best[label] = min(best[label], seconds)
            floor = floor_seconds(tmp, stage, args.epochs)
            lines.append(f"{stage}, {count} train / {val_count} val images, {args.epochs} epochs, augmentation on:")
            for label, seconds in best.items():
                lines.append(f"  {label:38s} {seconds:7.1f} s   {seconds / floor:.2f}x the step-rate floor")
            lines.append(f"  {'floor: training steps in memory':38s} {floor:7.1f} s")
            before = best["val through the whole model (before)"]
            lines.append("  speed-up " + ", ".join(f"{before / s:.2f}x" for s in list(best.values())[1:]))
        print("\n".join(lines))


if __name__ == "__main__":
    main()
