"""Images/s of the input pipeline at 160 px, for both stored-size policies, against image_dataset_from_directory.

    python -m benchmarks.input_pipeline [--train-per-class 1000] [--epochs 3]

Self-contained: generates the sample dataset (by default at the reference's size, 2x1000 train), extracts
and splits it with the project's own code, then encodes the train split twice, resized to 160 px and at
original size, and reads each back through `records.make_dataset` as the training stages do (shuffled,
batch 32). The reference loader reads the same kept files from folders. Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from benchmarks.common import encode, prepare_raw, recorded
from stages.lib import records

BATCH = 32
SIZE = 160


def images_per_second(dataset, epochs: int) -> float:
    """Best of `epochs` full passes (the first pass also warms up tf.data's autotuner)."""
    best = 0.0
    for _ in range(epochs):
        start, count = time.perf_counter(), 0
        for batch in dataset:
            count += int(batch[0].shape[0])
        best = max(best, count / (time.perf_counter() - start))
    return best


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        raw, frames = prepare_raw(tmp, args.train_per_class)
        train = frames["train"]
        size_note = f"{train['width'].mean():.0f}x{train['height'].mean():.0f}"
        print(f"train: {len(train)} images, mean size {size_note} px; {os.cpu_count()} CPU cores")

        count = sum(len(f) for f in frames.values())
        for label, stored in (("records stored at 160 px", SIZE), ("records at original size", 0)):
            out = tmp / f"records-{stored}"
            seconds = encode(raw, frames, out, stored)
            megabytes = sum(p.stat().st_size for p in out.glob("train-*")) / 1e6
            dataset = records.make_dataset(out, "train", image_size=SIZE, batch_size=BATCH, shuffle_seed=0)
            rate = images_per_second(dataset, args.epochs)
            print(
                f"{label:28s}: encode {count / seconds:6.0f} images/s, train split {megabytes:6.1f} MB on disk, "
                f"pipeline at {SIZE} px {rate:6.0f} images/s"
            )

        # The reference loader on the same (kept, decodable) files: it would stop at the first broken file.
        folders = tmp / "folders"
        for path in train["path"]:
            (folders / path).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(raw / path, folders / path)
        reference = keras.utils.image_dataset_from_directory(
            folders / "train", image_size=(SIZE, SIZE), batch_size=BATCH, shuffle=True, seed=0, verbose=False
        ).prefetch(tf.data.AUTOTUNE)
        rate = images_per_second(reference, args.epochs)
        print(f"{'image_dataset_from_directory':28s}: pipeline at {SIZE} px {rate:6.0f} images/s")
        shutil.rmtree(folders)


if __name__ == "__main__":
    main()
