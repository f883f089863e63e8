"""finetune stage: models/transfer.keras + data/tfrecords -> models/finetune.keras, dvclive/finetune/, metrics.

    python -m stages.finetune

Unfreezes the base of the transfer model from layer model.fine_tune_at on (BatchNorm stays in inference
mode), recompiles with RMSprop at transfer.learning_rate x finetune.lr_factor and trains finetune.epochs
more epochs. The epoch count continues the transfer stage's: with 10 + 10 epochs the logs show 11-20.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras

from stages.lib import atomic, models, params, records, training
from stages.lib.cli import PipelineError, run
from stages.lib.fetch import sha256_file

PARAMS = (
    "seed",
    "train.strategy",
    "train.cache_images",
    "model.fine_tune_at",
    "transfer.epochs",
    "transfer.learning_rate",
    "finetune",
)


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_stage_arguments(parser, "finetune")
    parser.add_argument("--transfer-model", type=Path, default=Path("models/transfer.keras"))
    parser.add_argument("--params", type=Path, default=params.PARAMS_FILE)
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)
    seed, fine_tune_at = p.seed, p.model.fine_tune_at
    transfer_epochs, learning_rate = p.transfer.epochs, p.transfer.learning_rate * p.finetune.lr_factor
    epochs, batch_size = p.finetune.epochs, p.finetune.batch_size

    if not args.transfer_model.is_file():
        raise PipelineError(f"{args.transfer_model}: missing; run the transfer stage first (dvc repro transfer)")
    training.set_seeds(seed)
    strategy = training.make_strategy(p.train.strategy)
    cache = p.train.cache_images
    with strategy.scope():
        model = keras.models.load_model(args.transfer_model, safe_mode=True, compile=False)  # recompiled below
        models.unfreeze_from(model, fine_tune_at)
        model.compile(
            optimizer=keras.optimizers.RMSprop(learning_rate),
            loss=training.logit_loss(),
            metrics=training.logit_metrics(),
        )
    size = model.input_shape[1]  # whatever size the transfer stage trained at
    meta = records.read_meta(args.records)
    train = records.make_dataset(
        args.records, "train", image_size=size, batch_size=batch_size, shuffle_seed=seed, cache=cache
    )
    val = records.make_dataset(args.records, "val", image_size=size, batch_size=batch_size, cache=cache)
    key = training.fingerprint(
        stage="finetune", params=p.snapshot(), meta=meta, parent=sha256_file(args.transfer_model)
    )
    result = training.fit_resumable(
        lambda: model,
        train,
        val,
        first_epoch=transfer_epochs,
        last_epoch=transfer_epochs + epochs,
        train_count=meta["splits"]["train"]["count"],
        work_dir=args.checkpoints,
        live_dir=args.logs,
        key=key,
        strategy=strategy,
    )
    training.save_model(result.model, args.model)
    metrics = training.stage_metrics(result, training.count_params(result.model))
    metrics["trainable_variables"] = len(result.model.trainable_variables)
    atomic.write_json(args.metrics, metrics)
    print(f"finetune: val accuracy {metrics.get('val.accuracy', float('nan')):.4f} -> {args.model}")
    return p


if __name__ == "__main__":
    run(main)
