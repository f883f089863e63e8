"""baseline stage: data/tfrecords -> models/baseline.keras, dvclive/baseline/, metrics/baseline.json.

A CNN trained from scratch (baseline.arch; default: seed 001's small conv net at 100 px), at its own
baseline.image_size, resized from the stored records in the input pipeline.
"""

from __future__ import annotations

from stages.lib import stage_params
from stages.lib.cli import run, training_parser
from stages.lib.params import Params

PARAMS = ("seed", "train", "baseline")


def main(argv: list[str] | None = None) -> Params:
    args = training_parser(__doc__).parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    b = p.baseline
    # TensorFlow only now: --help, a bad argument or a bad param answer in a second, not after its 4-5 s import.
    import keras

    from stages.lib import augment, cnns, training

    stage = training.start("baseline", args, p)
    with stage.scope():
        augmentation = augment.build_augmentation(b.augment, p.seed)
        models = cnns.build_for_training(b.arch, b.image_size, stage.num_classes, augmentation)
        stage.compile(models, keras.optimizers.Adam(stage.learning_rate(b.learning_rate, b, b.batch_size)))
    train, val = stage.datasets(b.image_size, b.batch_size)
    # GoogLeNet trains with two auxiliary outputs: `targets` repeats the label for each of them.
    result = stage.fit(lambda: models.train, train.map(models.targets), val.map(models.targets), range(b.epochs))
    stage.finish(cnns.main_output(result.model, b.arch), result)  # no auxiliary heads in the saved model
    return p


if __name__ == "__main__":
    run(main)
