"""Pretrain a base network offline on a source task drawn by the sample generator, for the demo's transfer learning.

    .venv/bin/python scripts/pretrain_base.py [--out pretrained/...weights.h5] [--images-per-class 1000] ...

No network means no ImageNet, so the demo gets a pretrained base the way transfer learning always does: train it
on a larger *source* task, then transfer it to the small target. The source task is the sample generator's eight
animals that are not the demo's target (rabbits, bears, mice, birds, frogs, pigs, foxes, fish: never a cat or a
dog, and drawn from their own generators, so no target image either). The base is keras.applications' MobileNetV2
(random start) at the demo's image size, under GlobalAveragePooling + Dense(8), trained with augmentation.

BatchNorm: in a network trained from scratch for a few thousand steps the weights move faster than the moving
statistics follow (measured here: train accuracy 0.79, inference-mode accuracy on held-out images at chance,
0.12, after 4 epochs, with momentum 0.99). So once training ends, the moving statistics are set from the final
weights (models.calibrate_batchnorm, on --calibration-images train images), and the held-out accuracy is then
measured in inference mode, as the transfer stage will use the base.

Writes the base's weights (a .weights.h5 that `model.weights` takes) and beside it <name>.json: the source task,
its images, the settings, per-epoch accuracy on the source's held-out images, the seconds it took, the
machine configuration, library versions and the weights' sha256. Deterministic for the same arguments on the
same machine configuration (README, Determinism).
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import stages  # noqa: F401  (quiet TensorFlow start-up)
from stages.lib import files, models, provenance, runtime
from stages.lib.sample import draw_sample_image, image_rng
from stages.lib.sample.drawing import ANIMALS

TARGET = ("cats", "dogs")  # the demo's classes: never in the source task
SOURCE = tuple(animal.name for animal in ANIMALS if animal.name not in TARGET)
SOURCE_SEED_OFFSET = 1_000_003  # the source images' generators: other seeds than any demo image's


def draw(seed: int, label: str, index: int, size: int) -> np.ndarray:
    """One source image, drawn as the sample archive draws its images, squashed to size x size like encode does."""
    image, _ = draw_sample_image(image_rng(seed + SOURCE_SEED_OFFSET, label, index), label)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def source_images(seed: int, per_class: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    jobs = [(label, index) for label in SOURCE for index in range(per_class)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(lambda job: draw(seed, job[0], job[1], size), jobs))
    labels = np.array([SOURCE.index(label) for label, _ in jobs], dtype=np.int32)
    return np.stack(images), labels


def build(size: int, alpha: float, momentum: float):
    base = keras.applications.MobileNetV2(input_shape=(size, size, 3), include_top=False, weights=None, alpha=alpha)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    inputs = keras.Input((size, size, 3))
    x = keras.layers.RandomFlip("horizontal", seed=1)(inputs)
    x = keras.layers.RandomRotation(0.05, seed=2)(x)
    x = keras.layers.RandomZoom(0.1, seed=3)(x)
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(x)  # MobileNetV2's preprocessing, as the transfer model's
    x = base(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(SOURCE))(x)
    return base, keras.Model(inputs, outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("pretrained/mobilenet_v2_animals.weights.h5"))
    parser.add_argument("--images-per-class", type=int, default=1000)
    parser.add_argument("--held-out-fraction", type=float, default=0.1)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--alpha", type=float, default=1.0, help="MobileNetV2 width; the registry's base is 1.0")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--momentum", type=float, default=0.99, help="BatchNorm momentum while pretraining")
    parser.add_argument(
        "--calibration-images", type=int, default=512, help="train images that set BatchNorm's statistics"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    images, labels = source_images(args.seed, args.images_per_class, args.size)
    drawn = time.perf_counter() - started
    order = np.random.default_rng(args.seed).permutation(len(labels))
    held_out = order[: round(len(order) * args.held_out_fraction)]
    train = order[len(held_out) :]
    print(f"source: {len(train)} train + {len(held_out)} held-out images of {', '.join(SOURCE)} in {drawn:.0f} s")

    keras.utils.set_random_seed(args.seed)
    tf.config.experimental.enable_op_determinism()
    base, model = build(args.size, args.alpha, args.momentum)
    steps = args.epochs * -(-len(train) // args.batch_size)
    schedule = keras.optimizers.schedules.CosineDecay(args.learning_rate, steps)
    model.compile(
        keras.optimizers.Adam(schedule),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    history = model.fit(
        images[train].astype("float32"),
        labels[train],
        batch_size=args.batch_size,
        epochs=args.epochs,
        shuffle=True,
        verbose=2,
    )
    before = model.evaluate(images[held_out].astype("float32"), labels[held_out], verbose=0, return_dict=True)
    calibration = images[train[: args.calibration_images]].astype("float32") / 127.5 - 1.0  # the base's input
    models.calibrate_batchnorm(base, calibration)
    after = model.evaluate(images[held_out].astype("float32"), labels[held_out], verbose=0, return_dict=True)
    print(
        f"held-out accuracy in inference mode: {before['accuracy']:.4f} before, {after['accuracy']:.4f} after "
        "setting BatchNorm's statistics from the final weights"
    )
    seconds = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp.weights.h5")
    base.save_weights(tmp)
    tmp.replace(args.out)
    described = {
        "weights": args.out.name,
        "sha256": files.sha256_file(args.out),
        "base": f"keras.applications.MobileNetV2(alpha={args.alpha}, include_top=False), {args.size} px",
        "source_task": {
            "classes": list(SOURCE),
            "excluded_target_classes": list(TARGET),
            "train_images": len(train),
            "held_out_images": len(held_out),
            "generator": "stages/lib/sample (draw_sample_image), seeds offset by "
            f"{SOURCE_SEED_OFFSET} from --seed {args.seed}",
        },
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "train_accuracy_by_epoch": [round(v, 4) for v in history.history["accuracy"]],
        "held_out_accuracy": round(after["accuracy"], 4),
        "held_out_accuracy_before_batchnorm_calibration": round(before["accuracy"], 4),
        "seconds": round(seconds, 1),
        "machine": runtime.machine(),
        "versions": provenance.library_versions(),
        "command": "python scripts/pretrain_base.py "
        + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()),
    }
    files.write_json(args.out.with_suffix("").with_suffix(".json"), described)
    print(json.dumps({k: described[k] for k in ("weights", "sha256", "seconds")}))


if __name__ == "__main__":
    main()
