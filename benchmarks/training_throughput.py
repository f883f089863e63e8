"""Training images/s of transfer and fine-tuning at 160 px: real input pipeline vs in-memory tensors.

    python -m benchmarks.training_throughput [--train-per-class 200] [--epochs 10]

Builds the stages' own models (MobileNetV2, random weights: the step cost does not depend on their
values) and trains one epoch on the sample data twice: from the TFRecord input pipeline exactly as the
stage builds it, and from the same batches already decoded in memory. The ratio shows whether input
ever holds training back (goal: >= 0.9). Then the transfer stage's cached-features path: one pass of the
frozen base over train + val, then the head alone, against the full frozen model, for `--epochs` epochs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import keras
import tensorflow as tf

from benchmarks.common import encode, prepare_raw, recorded
from stages.lib import models, records
from stages.lib.augment import build_augmentation
from stages.lib.params import AugmentParams

SIZE, BATCH = 160, 32
REFERENCE_AUGMENT = AugmentParams("horizontal", 0.1, 0.0, 0.0, 0.0, 0.0)
NO_AUGMENT = AugmentParams("none", 0.0, 0.0, 0.0, 0.0, 0.0)


def build(augment: AugmentParams, fine_tune_at: int | None) -> keras.Model:
    base = models.build_base("mobilenet_v2", SIZE, None)
    model = models.build_transfer_model(base, "mobilenet_v2", SIZE, 2, 0.2, build_augmentation(augment, 0))
    if fine_tune_at is not None:
        models.unfreeze_from(model, fine_tune_at, "mobilenet_v2")
    optimizer = keras.optimizers.Adam(3e-4) if fine_tune_at is None else keras.optimizers.RMSprop(3e-5)
    model.compile(optimizer, keras.losses.BinaryCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def best_rates(model: keras.Model, datasets: dict[str, tf.data.Dataset], count: int, rounds: int = 2) -> dict:
    """Images/s of one training epoch on each dataset: best of `rounds`, alternating between the datasets
    so that a slow moment of the machine does not land on one of them only."""
    for dataset in datasets.values():
        model.fit(dataset, epochs=1, verbose=0)  # trace the step function, fill caches
    best = dict.fromkeys(datasets, 0.0)
    for _ in range(rounds):
        for name, dataset in datasets.items():
            start = time.perf_counter()
            model.fit(dataset, epochs=1, verbose=0)
            best[name] = max(best[name], count / (time.perf_counter() - start))
    return best


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=10, help="epochs for the cached-features comparison")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw, frames = prepare_raw(tmp, args.train_per_class)
        encode(raw, frames, tmp / "records", SIZE)
        count = len(frames["train"])

        # The training stages' pipeline (train.cache_images: true keeps decoded images after epoch 1),
        # the same without that cache (decoding every epoch), and fixed batches of tensors in memory.
        def stage_pipeline(cache: bool) -> tf.data.Dataset:
            return records.make_dataset(
                tmp / "records", "train", image_size=SIZE, batch_size=BATCH, shuffle_seed=0, cache=cache
            )

        pipeline, uncached = stage_pipeline(True), stage_pipeline(False)
        in_memory = uncached.cache()  # fixed batches once filled
        for _ in in_memory:
            pass

        for label, augment, fine_tune_at in (
            ("transfer (frozen, flip+rotation)", REFERENCE_AUGMENT, None),
            ("fine-tune from layer 100", REFERENCE_AUGMENT, 100),
        ):
            datasets = {"pipeline": pipeline, "uncached": uncached, "memory": in_memory}
            rates = best_rates(build(augment, fine_tune_at), datasets, count, rounds=3)
            print(
                f"{label:34s}: stage pipeline {rates['pipeline']:6.1f} images/s "
                f"(without image cache {rates['uncached']:6.1f}), in memory {rates['memory']:6.1f} images/s, "
                f"ratio {rates['pipeline'] / rates['memory']:.2f} ({rates['uncached'] / rates['memory']:.2f})"
            )

        # Cached features: the frozen base once over train + val, then the head alone, vs the full model.
        model = build(NO_AUGMENT, None)
        val = records.make_dataset(tmp / "records", "val", image_size=SIZE, batch_size=BATCH)
        start = time.perf_counter()
        features = keras.Model(model.input, model.get_layer(models.FEATURES_LAYER_NAME).output)
        train_x, train_y = models.features(features, in_memory)  # the transfer stage's own function
        val_x, val_y = models.features(features, val)
        head_in = keras.Input(train_x.shape[1:])
        head = keras.Model(head_in, model.get_layer("logits")(model.get_layer("dropout")(head_in)))
        head.compile(keras.optimizers.Adam(3e-4), keras.losses.BinaryCrossentropy(from_logits=True))
        head_data = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(count, seed=0).batch(BATCH)
        val_data = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(BATCH)
        head.fit(head_data, validation_data=val_data, epochs=args.epochs, verbose=0)
        cached_seconds = time.perf_counter() - start

        full = build(NO_AUGMENT, None)
        full.fit(pipeline, validation_data=val, epochs=1, verbose=0)  # trace, not counted
        start = time.perf_counter()
        full.fit(pipeline, validation_data=val, epochs=args.epochs, verbose=0)
        full_seconds = time.perf_counter() - start
        print(
            f"transfer, augmentation off, {args.epochs} epochs: full model {full_seconds:.1f} s, "
            f"cached features {cached_seconds:.1f} s (features included), speed-up {full_seconds / cached_seconds:.1f}x"
        )


if __name__ == "__main__":
    main()
