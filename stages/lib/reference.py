"""The reference experiment this project reproduces, stated once: its data, its weights and its figures.

The TensorFlow transfer-learning tutorial (seed 002 of ../shared/seeds) on `cats_and_dogs_filtered`, with
MobileNetV2 pretrained on ImageNet at 160x160, and the small CNN of seed 001 (exercise 3.03). params.yaml as
committed is this experiment; the report quotes these figures beside a run's numbers and says whether the run
is comparable with them; the README's figures are held to this module by a test.
"""

from __future__ import annotations

DATASET = "cats_and_dogs_filtered"  # data.source's name for the reference archive, whose URL is in sources.ARCHIVES
WEIGHTS = "imagenet"
BASE = "mobilenet_v2"
IMAGE_SIZE = 160
# What the report checks a run's data and weights against before it calls the figures below comparable (names
# prove nothing: any zip can be called cats_and_dogs_filtered.zip). Files per class folder of the archive:
DATA_FILES = {"train/cats": 1000, "train/dogs": 1000, "validation/cats": 500, "validation/dogs": 500}
# sha256 of the dataset's content (manifest.json's `sha256`: its files as data/raw holds them, however packed) and of
# Keras' MobileNetV2 160 px no-top weights file. Not recorded yet: no machine of this project could download them.
# Copy them from the manifest and metrics/transfer.json of a run on the real files.
DATA_SHA256: str | None = None
WEIGHTS_SHA256: str | None = None

MODELS = ("baseline", "transfer", "finetune")  # the experiment's three models, in the order of every table
# Earlier experiments, quoted for orientation only: never results of a run of this pipeline.
FIGURES = {
    "baseline": "0.71 val accuracy (seed 001, small CNN)",
    "transfer": "0.9765 test accuracy (seed 002)",
    "finetune": "0.979 test accuracy (seed 002)",
}
# MobileNetV2 at 160 px with the tutorial's head: parameters in all, trainable when the base is frozen, and
# trainable when fine-tuning from layer 100 (in 56 variables). This project's models have exactly these counts.
PARAMS_TOTAL = 2_259_265
PARAMS_TRAINABLE_TRANSFER = 1_281
PARAMS_TRAINABLE_FINETUNE_100 = 1_862_721
