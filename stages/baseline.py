"""baseline stage: data/tfrecords -> models/baseline.keras, dvclive/baseline/, metrics/baseline.json.

    python -m stages.baseline

A CNN trained from scratch (baseline.arch; default: seed 001's small conv net at 100 px), at its own
baseline.image_size, resized from the stored records in the input pipeline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras

from stages.lib import atomic, augment, params, records, training
from stages.lib.architectures import build_baseline_for_training
from stages.lib.cli import run

PARAMS = ("seed", "train.strategy", "train.cache_images", "baseline")


def main(argv: list[str] | None = None) -> params.StageParams:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    training.add_stage_arguments(parser, "baseline")
    parser.add_argument("--params", type=Path, default=params.PARAMS_FILE)
    args = parser.parse_args(argv)
    p = params.for_stage(PARAMS, args.params)
    b = p.baseline
    seed, arch, size, epochs, batch_size, learning_rate = (
        p.seed,
        b.arch,
        b.image_size,
        b.epochs,
        b.batch_size,
        b.learning_rate,
    )

    training.set_seeds(seed)
    strategy = training.make_strategy(p.train.strategy)
    cache = p.train.cache_images
    meta = records.read_meta(args.records)
    with strategy.scope():
        augmentation = augment.build_augmentation(b.augment, seed)
        built = build_baseline_for_training(arch, size, None if augment.is_identity(augmentation) else augmentation)
        built.compile(
            keras.optimizers.Adam(learning_rate),
            training.logit_loss(),
            metrics=training.logit_metrics(),
        )
    # GoogLeNet trains with two auxiliary outputs: `targets` repeats the label for each of them.
    train = records.make_dataset(
        args.records, "train", image_size=size, batch_size=batch_size, shuffle_seed=seed, cache=cache
    )
    val = records.make_dataset(args.records, "val", image_size=size, batch_size=batch_size, cache=cache)
    result = training.fit_resumable(
        lambda: built.train,
        train.map(built.targets),
        val.map(built.targets),
        first_epoch=0,
        last_epoch=epochs,
        train_count=meta["splits"]["train"]["count"],
        work_dir=args.checkpoints,
        live_dir=args.logs,
        key=training.fingerprint(stage="baseline", params=p.snapshot(), meta=meta),
        strategy=strategy,
    )
    # The saved model has the main output only (no auxiliary heads), whether or not training resumed.
    trained = result.model
    model = trained if len(trained.outputs) == 1 else keras.Model(trained.inputs, trained.outputs[0], name=arch)
    training.save_model(model, args.model)
    metrics = training.stage_metrics(result, training.count_params(model))
    atomic.write_json(args.metrics, metrics)
    print(f"baseline: {arch} val accuracy {metrics.get('val.accuracy', float('nan')):.4f} -> {args.model}")
    return p


if __name__ == "__main__":
    run(main)
