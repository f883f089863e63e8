"""Training images/s of the transfer and fine-tuning models under train.precision, and under XLA.

    python -m benchmarks.precision [--images 256] [--rounds 2]

MobileNetV2 at 160 px, batch 32, random weights and inputs held in memory (the step cost depends on neither),
op determinism on as in the stages. XLA (`jit_compile=True`) runs with op determinism off, as Keras compiles
nothing with XLA under it: it is what a `train.jit_compile` param would have needed, and the stages have none, as
XLA is slower on the CPUs measured. Each setting is measured in turn, round after round, and the best round is
kept, so a slow moment of a shared machine does not land on one setting only.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
import tensorflow as tf

from benchmarks.common import recorded
from stages.lib import internals, models

SETTINGS = (("float32", False), ("mixed_bfloat16", False), ("mixed_float16", False), ("float32", True))


def determinism(jit_compile: bool) -> None:
    """Op determinism on, as in the stages, but off for XLA, which Keras does not compile under it."""
    (internals.disable_op_determinism if jit_compile else tf.config.experimental.enable_op_determinism)()


def build(precision: str, jit_compile: bool, fine_tune_at: int | None) -> keras.Model:
    determinism(jit_compile)
    keras.mixed_precision.set_global_policy(precision)
    base = models.build_base("mobilenet_v2", 160, None)
    model = models.build_transfer_model(base, "mobilenet_v2", 160, 2, 0.2, None)
    if fine_tune_at is not None:
        models.unfreeze_from(model, fine_tune_at, "mobilenet_v2")
    model.compile(
        keras.optimizers.Adam(3e-4), keras.losses.BinaryCrossentropy(from_logits=True), jit_compile=jit_compile
    )
    keras.mixed_precision.set_global_policy("float32")
    assert model.jit_compile == jit_compile, "Keras did not compile the model as asked"
    return model


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (args.images, 160, 160, 3)).astype("float32")
    data = tf.data.Dataset.from_tensor_slices((x, np.zeros((args.images, 1), "float32"))).batch(32).cache()
    for label, fine_tune_at in (("transfer (frozen base)", None), ("fine-tune from layer 100", 100)):
        built = {setting: build(*setting, fine_tune_at) for setting in SETTINGS}
        for (_, jit_compile), model in built.items():
            determinism(jit_compile)
            model.fit(data, epochs=1, verbose=0)  # trace and compile
        best = dict.fromkeys(SETTINGS, 0.0)
        for _ in range(args.rounds):
            for setting, model in built.items():
                determinism(setting[1])
                start = time.perf_counter()
                model.fit(data, epochs=1, verbose=0)
                best[setting] = max(best[setting], args.images / (time.perf_counter() - start))
        reference = best[SETTINGS[0]]
        print(f"{label}:")
        for (precision, jit_compile), rate in best.items():
            print(f"  {precision:15s} jit_compile={str(jit_compile):5s} {rate:6.1f} images/s  {rate / reference:.2f}x")


if __name__ == "__main__":
    main()
