"""transfer stage: data/tfrecords -> models/transfer.keras, dvclive/transfer/, metrics/transfer.json.

    python -m stages.transfer

A pretrained base (model.base, model.weights), frozen and in inference mode, under a new
GlobalAveragePooling -> Dropout -> Dense(1) head, trained on the train split and validated on val.
With model.weights: none, the random base's BatchNorm statistics are first set from
model.calibration_images train images (models.calibrate_batchnorm), or every image gives the same features.
With augmentation off (and transfer.cache_features), the base's features are computed once and only
the head is trained on them: the same model, without running the frozen base every epoch.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from stages.lib import atomic, augment, models, params, records, training
from stages.lib.cli import run

PARAMS = (
    "seed",
    "train.strategy",
    "train.cache_images",
    "model.base",
    "model.weights",
    "model.image_size",
    "model.dropout",
    "model.calibration_images",
    "transfer",
)


def compile_model(model: keras.Model, learning_rate: float) -> keras.Model:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=training.logit_loss(),
        metrics=training.logit_metrics(),
    )
    return model


def calibration_batch(records_dir: Path, image_size: int, count: int, seed: int) -> tf.Tensor:
    """`count` train images (all of them if the split is smaller), a seeded sample: the first batch of a shuffle."""
    dataset = records.make_dataset(records_dir, "train", image_size=image_size, batch_size=count, shuffle_seed=seed)
    images, _ = next(iter(dataset))
    return images


def cached_features(feature_model: keras.Model, dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Run the frozen base once over an unshuffled split: (features, labels)."""
    features, labels = [], []
    for images, batch_labels in dataset:
        features.append(feature_model(images, training=False).numpy())
        labels.append(batch_labels.numpy())
    return np.concatenate(features), np.concatenate(labels)


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_stage_arguments(parser, "transfer")
    parser.add_argument("--params", type=Path, default=params.PARAMS_FILE)
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)
    seed, base_name, size, dropout = p.seed, p.model.base, p.model.image_size, p.model.dropout
    calibration = p.model.calibration_images
    t = p.transfer
    epochs, batch_size, learning_rate, cache_features = t.epochs, t.batch_size, t.learning_rate, t.cache_features

    training.set_seeds(seed)
    strategy = training.make_strategy(p.train.strategy)
    cache = p.train.cache_images
    weights = models.resolve_weights(base_name, p.model.weights, size)
    meta = records.read_meta(args.records)
    train = records.make_dataset(
        args.records, "train", image_size=size, batch_size=batch_size, shuffle_seed=seed, cache=cache
    )
    val = records.make_dataset(args.records, "val", image_size=size, batch_size=batch_size, cache=cache)
    with strategy.scope():
        augmentation = augment.build_augmentation(t.augment, seed)
        base = models.build_base(base_name, size, weights)
        calibrated = 0
        if weights is None and calibration:  # random weights: BatchNorm statistics from the data, not Keras' 0/1
            images = calibration_batch(args.records, size, calibration, seed)
            models.calibrate_batchnorm(base, models.BASES[base_name].preprocessing()(images))
            calibrated = int(images.shape[0])
        model = compile_model(models.build_transfer_model(base, size, dropout, augmentation, base_name), learning_rate)
    key = training.fingerprint(stage="transfer", params=p.snapshot(), meta=meta)
    fit_args = dict(
        first_epoch=0,
        last_epoch=epochs,
        train_count=meta["splits"]["train"]["count"],
        work_dir=args.checkpoints,
        live_dir=args.logs,
        key=key,
        strategy=strategy,
    )

    extra: dict[str, float] = {
        "cached_features": int(cache_features and augment.is_identity(augmentation)),
        "calibration_images": calibrated,  # images that set the base's BatchNorm statistics; 0: not calibrated
    }
    if extra["cached_features"]:
        start = time.perf_counter()
        feature_model = keras.Model(model.input, model.get_layer(models.FEATURES_LAYER_NAME).output)
        plain_train = records.make_dataset(args.records, "train", image_size=size, batch_size=batch_size)
        train_x, train_y = cached_features(feature_model, plain_train)
        val_x, val_y = cached_features(feature_model, val)
        extra["features_seconds"] = round(time.perf_counter() - start, 1)
        train_features = tf.data.Dataset.from_tensor_slices((train_x, train_y))
        train_features = train_features.shuffle(len(train_x), seed=seed).batch(batch_size)
        val_features = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(batch_size)

        def build_head() -> keras.Model:
            # The head's layers are the full model's own, so training the head trains the full model.
            head_input = keras.Input(train_x.shape[1:], name="features")
            head_output = head_input
            for name in models.HEAD_LAYER_NAMES:
                head_output = model.get_layer(name)(head_output)
            return compile_model(keras.Model(head_input, head_output, name="head"), learning_rate)

        result = training.fit_resumable(build_head, train_features, val_features, **fit_args)
        for name in models.HEAD_LAYER_NAMES:  # a head resumed from a checkpoint is a separate copy
            model.get_layer(name).set_weights(result.model.get_layer(name).get_weights())
    else:
        result = training.fit_resumable(lambda: model, train, val, **fit_args)
        model = result.model

    training.save_model(model, args.model)
    metrics = training.stage_metrics(result, training.count_params(model)) | extra
    atomic.write_json(args.metrics, metrics)
    print(f"transfer: val accuracy {metrics.get('val.accuracy', float('nan')):.4f} -> {args.model}")
    return p


if __name__ == "__main__":
    run(main)
