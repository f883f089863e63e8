"""Training images/s of MobileNetV2 at 160 px on in-memory tensors: the rate the input pipeline must beat.

    python -m benchmarks.model_step_rate [--steps 10] [--batch 32]

Frozen base (transfer: only the 1,281-parameter head trains, the base runs in inference mode) and
unfrozen from layer 100 (fine-tuning). Weights are random (`weights=None`): the step cost does not
depend on their values, and the ImageNet file cannot be downloaded here.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks.common import recorded

SIZE = 160


def build(fine_tune_at: int | None):
    import keras

    base = keras.applications.MobileNetV2(input_shape=(SIZE, SIZE, 3), include_top=False, weights=None)
    base.trainable = fine_tune_at is not None
    if fine_tune_at is not None:
        for layer in base.layers[:fine_tune_at]:
            layer.trainable = False
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.applications.mobilenet_v2.preprocess_input(inputs)
    x = base(x, training=False)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dropout(0.2)(x)
    model = keras.Model(inputs, keras.layers.Dense(1)(x))
    model.compile(optimizer=keras.optimizers.Adam(3e-4), loss=keras.losses.BinaryCrossentropy(from_logits=True))
    return model


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (args.batch, SIZE, SIZE, 3)).astype("float32")
    labels = rng.integers(0, 2, (args.batch, 1)).astype("float32")
    for label, fine_tune_at in (("frozen base (transfer)", None), ("unfrozen from layer 100", 100)):
        model = build(fine_tune_at)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        model.train_on_batch(images, labels)  # compile the step function
        start = time.perf_counter()
        for _ in range(args.steps):
            model.train_on_batch(images, labels)
        seconds = (time.perf_counter() - start) / args.steps
        print(
            f"MobileNetV2 {SIZE} px, {label:24s}: {trainable:9,d} trainable params, "
            f"{1 / seconds:5.2f} steps/s, {args.batch / seconds:6.1f} images/s (batch {args.batch})"
        )


if __name__ == "__main__":
    main()
