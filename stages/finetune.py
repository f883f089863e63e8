"""finetune stage: models/transfer.keras + data/tfrecords -> models/finetune.keras, dvclive/finetune/, metrics.

Unfreezes the base of the transfer model from layer model.fine_tune_at on (null: the base's own choice,
bases.BASES; BatchNorm stays in inference mode), recompiles with RMSprop at transfer.learning_rate x
finetune.lr_factor and trains finetune.epochs more epochs. The epoch count continues the transfer stage's:
with 10 + 10 epochs the logs show 11-20. With finetune.cache_features, the val images pass once through the
layers below fine_tune_at (frozen, in inference mode) and every epoch validates the layers above on those
activations; when the model has no augmentation, the train images' too, and only the layers above train on
them (models.trained_part shares them with the model that is saved): the same numbers, without re-running
the frozen part. From layer 0 nothing is frozen below the cut, so there is nothing to compute once: the stage
trains without the cache and says so.
"""

from __future__ import annotations

import time
from pathlib import Path

from stages.lib import stage_params
from stages.lib.cli import run, training_parser
from stages.lib.errors import rerun
from stages.lib.params import Params

PARAMS = (
    "seed",
    "train",
    "model.base",
    "model.fine_tune_at",
    "transfer.epochs",
    "transfer.learning_rate",
    "finetune",
)


def main(argv: list[str] | None = None) -> Params:
    parser = training_parser(__doc__)
    parser.add_argument("--transfer-model", type=Path, required=True, help="the transfer stage's model")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    base, fine_tune_at, f = p.model.base, p.model.fine_tune_at, p.finetune
    # TensorFlow only now: --help, a bad argument or a bad param answer in a second, not after its 4-5 s import.
    import keras
    import tensorflow as tf

    from stages.lib import files, heads, models, records, saving, training
    from stages.lib.bases import BASES

    fine_tune_at = BASES[base].fine_tune_at if fine_tune_at is None else fine_tune_at
    transfer_epochs, learning_rate = p.transfer.epochs, p.transfer.learning_rate * f.lr_factor

    stage = training.start("finetune", args, p)
    with stage.scope():
        # Without its optimizer (recompiled below); its base wrapped in InferenceMode again, as it trained.
        model = models.with_inference_mode(saving.load_model(args.transfer_model, "transfer"))
        if model.output_shape[-1] != heads.units(stage.num_classes):
            raise rerun(
                args.transfer_model, "transfer", f"{model.output_shape[-1]} outputs for {stage.num_classes} classes"
            )
        models.unfreeze_from(model, fine_tune_at, base)

        def optimizer() -> keras.optimizers.Optimizer:
            return keras.optimizers.RMSprop(stage.learning_rate(learning_rate, f, f.batch_size))

        stage.compile(model, optimizer())
    size = model.input_shape[1]  # the size the transfer stage trained at
    cache = f.cache_features and fine_tune_at > 0
    if f.cache_features and not cache:
        print(
            f"finetune: model.fine_tune_at {fine_tune_at} trains every layer of the base: nothing below it to compute "
            "once, so finetune.cache_features is not used"
        )
    cache_train = cache and not models.has_augmentation(model)  # no augmentation: train's are fixed too
    extra: dict[str, float] = {"cached_features": int(cache_train)}
    epochs = range(transfer_epochs, transfer_epochs + f.epochs)
    parent = files.sha256_file(args.transfer_model)
    if cache:  # below fine_tune_at nothing trains: the activations there never change
        start = time.perf_counter()
        frozen = models.frozen_part(model, fine_tune_at)
        cut = {}
        for split in ("train", "val") if cache_train else ("val",):  # stored order, class indices
            plain = records.make_dataset(args.records, split, image_size=size, batch_size=f.batch_size)
            cut[split] = models.activations(frozen, plain)
        extra["features_seconds"] = round(time.perf_counter() - start, 1)

    if cache_train:
        (train_cut, train_y), (val_cut, val_y) = cut["train"], cut["val"]
        train = tf.data.Dataset.from_tensor_slices((train_cut, train_y)).shuffle(len(train_y), seed=p.seed)
        val = tf.data.Dataset.from_tensor_slices((val_cut, val_y)).batch(f.batch_size)

        def build_upper():
            return stage.compile(models.trained_part(model, fine_tune_at), optimizer())

        # Trains `model`'s layers above the cut (shared with the model `build_upper` makes).
        result = stage.fit(build_upper, stage.for_training(train.batch(f.batch_size)), stage.for_validation(val),
                           epochs, parent=parent)  # fmt: skip
    else:
        train, val = stage.datasets(size, f.batch_size)
        if cache:
            val = stage.validation_on_features(
                *cut["val"], lambda trained: models.trained_part(trained, fine_tune_at), f.batch_size
            )
        result = stage.fit(lambda: model, train, val, epochs, parent=parent)
        model = result.model
    stage.finish(model, result, trainable_variables=len(model.trainable_variables), fine_tune_at=fine_tune_at, **extra)
    return p


if __name__ == "__main__":
    run(main)
