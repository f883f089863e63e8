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

import numpy as np

import stages  # noqa: F401  (quiet TensorFlow logs)
from stages.lib import records
from stages.lib.archive import extract_archive, find_dataset_root
from stages.lib.sample_data import write_sample_archive
from stages.lib.splitting import make_splits

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


def encode_train(frame, raw: Path, out: Path, image_size: int) -> tuple[float, float]:
    """Encode the train split into `out`; return (seconds, megabytes)."""
    out.mkdir(parents=True)
    rows = frame.iloc[np.random.default_rng(0).permutation(len(frame))].to_dict("records")
    start = time.perf_counter()
    encoded = records.encode_rows(rows, raw, image_size=image_size, jpeg_quality=95)
    shards = records.write_shards(encoded, out, "train", len(rows), 500)
    seconds = time.perf_counter() - start
    meta = {
        "class_names": ["cats", "dogs"],
        "image_size": image_size,
        "jpeg_quality": 95,
        "splits": {"train": {"count": len(rows), "shards": shards}},
    }
    (out / records.META_FILE).write_text(__import__("json").dumps(meta))
    return seconds, sum((out / s).stat().st_size for s in shards) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train-per-class", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import keras
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        write_sample_archive(tmp / "sample.zip", seed=0, train_per_class=args.train_per_class, validation_per_class=10)
        extract_archive(tmp / "sample.zip", tmp / "x", max_members=10**6, max_total_bytes=10**10)
        raw = find_dataset_root(tmp / "x")
        train = make_splits(raw, test_fraction=0.2, seed=0).frames["train"]
        print(
            f"data: {len(train)} train images generated, extracted and checked in {time.perf_counter() - start:.1f} s; "
            f"mean size {train['width'].mean():.0f}x{train['height'].mean():.0f} px; {os.cpu_count()} CPU cores"
        )

        for label, stored in (("records stored at 160 px", SIZE), ("records at original size", 0)):
            seconds, megabytes = encode_train(train, raw, tmp / f"records-{stored}", stored)
            dataset = records.make_dataset(
                tmp / f"records-{stored}", "train", image_size=SIZE, batch_size=BATCH, shuffle_seed=0
            )
            rate = images_per_second(dataset, args.epochs)
            print(
                f"{label:28s}: encode {len(train) / seconds:6.0f} images/s, {megabytes:6.1f} MB on disk, "
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
