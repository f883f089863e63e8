"""transfer stage: data/tfrecords -> models/transfer.keras, dvclive/transfer/, metrics/transfer.json.

A pretrained base (model.base, model.weights), frozen and in inference mode, under a new
GlobalAveragePooling -> Dropout -> Dense head, trained on the train split and validated on val.
With model.weights: none, the random base's BatchNorm statistics are first set from
model.calibration_images train images (models.calibrate_batchnorm), or every image gives the same features.
With transfer.cache_features, the frozen base's features of the val images are computed once and the head alone
is validated on them every epoch; with augmentation off, the train images' too, and only the head is trained
on them: the same model, without running the frozen base over the same images every epoch. With augmentation
on and transfer.augmented_views K, the features of K augmented views of each train image are computed once and
each epoch trains the head on one of them per image, drawn at random: K passes of the base instead of one per
epoch, and K views of each image instead of a new one every epoch.
"""

from __future__ import annotations

import time

from stages.lib import chance, model_origin, stage_params
from stages.lib.cli import run, training_parser
from stages.lib.errors import note, warn
from stages.lib.params import Params

PARAMS = (
    "seed",
    "train",
    "model.base",
    "model.weights",
    "model.image_size",
    "model.dropout",
    "model.calibration_images",
    "transfer",
)


def main(argv: list[str] | None = None) -> Params:
    args = training_parser(__doc__).parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    m, t = p.model, p.transfer
    size, seed = m.image_size, p.seed
    # TensorFlow only now: --help, a bad argument or a bad param answer in a second, not after its 4-5 s import.
    import keras
    import numpy as np
    import tensorflow as tf

    from stages.lib import augment, models, records, training

    weights = models.resolve_weights(m.base, m.weights, size, "transfer")
    if m.weights == "none":
        warn("transfer", chance.RANDOM_WEIGHTS)
    stage = training.start("transfer", args, p)
    train, val = stage.datasets(size, t.batch_size)
    calibrated = 0  # images that set the base's BatchNorm statistics; 0: not calibrated
    with stage.scope():
        augmentation = augment.build_augmentation(t.augment, seed)
        base = models.build_base(m.base, size, weights)
        if weights is None and m.calibration_images:  # random weights: BatchNorm statistics from the data
            calibrated = models.calibrate_on_train(base, m.base, args.records, size, m.calibration_images, seed)
        model = models.build_transfer_model(base, m.base, size, stage.num_classes, m.dropout, augmentation)
        stage.compile(model, keras.optimizers.Adam(stage.learning_rate(t.learning_rate, t, t.batch_size)))

    views = t.augmented_views if t.cache_features and augmentation is not None else 0
    extra: dict[str, float] = {
        "cached_features": int(t.cache_features and (augmentation is None or views > 0)),
        "augmented_views": views,
    }

    def plain(split: str) -> tf.data.Dataset:  # images and class indices in stored order, for the base's features
        return records.make_dataset(args.records, split, image_size=size, batch_size=t.batch_size)

    if extra["cached_features"]:
        start = time.perf_counter()
        feature_model = keras.Model(model.input, model.get_layer(models.FEATURES_LAYER_NAME).output)
        if views:  # K random views of every train image through the augmentation, each epoch one of them
            passes = [models.features(feature_model, plain("train"), augmented=True) for _ in range(views)]
            train_y = passes[0][1]
            train = training.one_view_each(np.stack([x for x, _ in passes], axis=1), train_y, seed)
        else:
            train_x, train_y = models.features(feature_model, plain("train"))
            train = tf.data.Dataset.from_tensor_slices((train_x, train_y)).shuffle(len(train_x), seed=seed)
        val_x, val_y = models.features(feature_model, plain("val"))
        extra["features_seconds"] = round(time.perf_counter() - start, 1)
        val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(t.batch_size)

        def build_head() -> keras.Model:
            head = models.head_on_features(model, val_x.shape[1:])
            return stage.compile(head, keras.optimizers.Adam(stage.learning_rate(t.learning_rate, t, t.batch_size)))

        train, val = stage.for_training(train.batch(t.batch_size)), stage.for_validation(val)
        result = stage.fit(build_head, train, val, range(t.epochs))  # trains `model`'s own head layers
    else:
        if t.cache_features:  # the frozen base gives val images the same features every epoch: compute them once
            start = time.perf_counter()
            feature_model = keras.Model(model.input, model.get_layer(models.FEATURES_LAYER_NAME).output)
            val_x, val_y = models.features(feature_model, plain("val"))
            extra["features_seconds"] = round(time.perf_counter() - start, 1)
            val = stage.validation_on_features(
                val_x, val_y, lambda trained: models.head_on_features(trained, val_x.shape[1:]), t.batch_size
            )
        result = stage.fit(lambda: model, train, val, range(t.epochs))
        model = result.model
    sha256 = models.weights_sha256(m.base, weights, size)  # what the report checks comparability with
    cause = model_origin.weak_transfer_cause(model_origin.read(m.weights, sha256))  # random, or pretrained on drawings
    if cause and m.weights != "none":  # (random weights were warned of at the start)
        note("transfer", f"if it scores below the CNN trained from scratch (baseline), likely cause: {cause}")
    stage.finish(model, result, cause, calibration_images=calibrated, **extra, **{"weights.sha256": sha256})
    return p


if __name__ == "__main__":
    run(main)
