"""TFRecord shards: the writer (encode stage) and the tf.data reader (training and evaluation), side by side.

Each example holds one image as RGB JPEG bytes (normalised once by the encode stage), its label index,
its path relative to data/raw (for reports and error messages) and its stored height and width.
Shards are named `<split>-NNNNN-of-NNNNN.tfrecord`; `meta.json` beside them lists class names,
counts, the stored size and each shard with its sha256, and is what the reader starts from. The reader checks
every shard's sha256 before reading: a shard with flipped bytes would stop training midway with TensorFlow's
DataLossError, and one cut at a record boundary would silently hold fewer images.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import tensorflow as tf

from stages.lib import files
from stages.lib.errors import first_line, require, rerun
from stages.lib.images import encode_rgb_jpeg, read_image_file

META_FILE = "meta.json"
PREFETCH_BATCHES = 2  # batches prepared ahead of the training step


@dataclass(frozen=True)
class Record:
    image: bytes  # RGB JPEG
    label: int
    path: str
    height: int
    width: int


def shard_names(split: str, num_shards: int) -> list[str]:
    return [f"{split}-{i:05d}-of-{num_shards:05d}.tfrecord" for i in range(num_shards)]


def serialize(record: Record) -> bytes:
    def _bytes(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    def _int(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    example = tf.train.Example(
        features=tf.train.Features(
            feature={
                "image": _bytes(record.image),
                "label": _int(record.label),
                "path": _bytes(record.path.encode("utf-8")),
                "height": _int(record.height),
                "width": _int(record.width),
            }
        )
    )
    # Features is a protobuf map: only deterministic serialization fixes its key order, and so the bytes.
    return example.SerializeToString(deterministic=True)


def write_shards(
    records: Iterable[Record], out_dir: Path, split: str, count: int, examples_per_shard: int
) -> dict[str, str]:
    """Write `count` records in the given order into ceil(count / examples_per_shard) contiguous shards;
    return {shard name: sha256}, in order, as meta.json lists them."""
    names = shard_names(split, max(1, -(-count // examples_per_shard)))
    iterator = iter(records)
    for index, name in enumerate(names):
        size = min(examples_per_shard, count - index * examples_per_shard)
        with tf.io.TFRecordWriter(str(out_dir / name)) as writer:
            for record in itertools.islice(iterator, size):
                writer.write(serialize(record))
    return {name: files.sha256_file(out_dir / name) for name in names}


def encode_rows(rows: Iterable[dict], raw_dir: Path, *, image_size: int, jpeg_quality: int) -> Iterator[Record]:
    """Records for split-CSV rows, in row order; images are converted on a thread pool (Pillow releases the GIL)."""

    def to_record(row: dict) -> Record:
        path = raw_dir / row["path"]
        try:
            jpeg, width, height = encode_rgb_jpeg(read_image_file(path), image_size, jpeg_quality)
        except (OSError, ValueError) as exc:  # the split stage checked it: the file changed since
            raise rerun(path, "split", f"no longer a usable image ({first_line(exc)})") from None
        return Record(jpeg, int(row["label_index"]), row["path"], height, width)

    with ThreadPoolExecutor(max_workers=os.cpu_count()) as pool:
        yield from pool.map(to_record, rows)  # map keeps input order, so shard bytes never depend on timing


def read_meta(records_dir: Path) -> dict:
    path = require(Path(records_dir) / META_FILE, "encode")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise rerun(path, "encode", f"not valid JSON ({exc})") from None


# ---- reader -------------------------------------------------------------------------------------

_FEATURES = {
    "image": tf.io.FixedLenFeature([], tf.string),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "path": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
}


def parse(serialized: tf.Tensor) -> dict[str, tf.Tensor]:
    return tf.io.parse_single_example(serialized, _FEATURES)


def decode(features: dict[str, tf.Tensor], image_size: int, stored_size: int) -> tf.Tensor:
    """uint8 RGB image, image_size x image_size (bilinear resize, rounded back to 8 bits when sizes differ)."""
    image = tf.io.decode_jpeg(features["image"], channels=3)
    if stored_size != image_size:  # a no-op resize still costs a copy; skip it when sizes match
        image = tf.image.resize(image, [image_size, image_size])  # bilinear, float32
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    return tf.ensure_shape(image, [image_size, image_size, 3])


def checked_shards(records_dir: Path, shards: dict[str, str]) -> list[str]:
    """Paths of the shards meta.json lists, each checked against its sha256 (about 1 s per GB)."""
    if not isinstance(shards, dict):
        raise rerun(records_dir / META_FILE, "encode", "written by an older version (no shard hashes)")
    for name, sha256 in shards.items():
        path = require(records_dir / name, "encode")
        if files.sha256_file(path) != sha256:
            raise rerun(path, "encode", f"its bytes are not those {META_FILE} recorded (changed or cut since)")
    return [str(records_dir / name) for name in shards]


def make_dataset(
    records_dir: Path,
    split: str,
    *,
    image_size: int,
    batch_size: int,
    shuffle_seed: int | None = None,
    cache: bool = False,
    with_paths: bool = False,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of (images, labels), or (images, labels, paths) with `with_paths`; images are float32 RGB
    in [0, 255], image_size x image_size, the input every model in this project takes.

    Pass `shuffle_seed` for the training split only: the whole split is shuffled (the buffer holds all of
    it), reshuffled every epoch, seeded. Without it the order is the stored order, the same on every pass.
    With `cache`, decoded images (uint8) are kept in memory after the first pass, so later epochs do no
    decoding at all (2,000 images at 160 px take 154 MB).
    """
    meta = read_meta(records_dir)
    if split not in meta["splits"]:
        raise KeyError(f"{Path(records_dir) / META_FILE}: no split {split!r}; has {sorted(meta['splits'])}")
    info = meta["splits"][split]
    shards = checked_shards(Path(records_dir), info["shards"])
    stored_size = meta["image_size"]
    parallel_reads = min(len(shards), 4) if shuffle_seed is not None and not cache else None
    dataset = tf.data.TFRecordDataset(shards, num_parallel_reads=parallel_reads)
    # The count is known from meta.json; telling tf.data lets Keras size its epochs (and check the files).
    dataset = dataset.apply(tf.data.experimental.assert_cardinality(info["count"]))

    def to_example(serialized: tf.Tensor):
        features = parse(serialized)
        return decode(features, image_size, stored_size), tf.cast(features["label"], tf.int32), features["path"]

    def shuffled(data: tf.data.Dataset) -> tf.data.Dataset:
        if shuffle_seed is None:
            return data
        return data.shuffle(max(info["count"], 1), seed=shuffle_seed, reshuffle_each_iteration=True)

    workers = os.cpu_count() or 1
    if cache:  # decode once, then shuffle the decoded images
        dataset = shuffled(dataset.map(to_example, num_parallel_calls=workers).cache())
    else:  # shuffle the small serialized records, then decode
        dataset = shuffled(dataset).map(to_example, num_parallel_calls=workers)

    def to_inputs(image: tf.Tensor, label: tf.Tensor, path: tf.Tensor):
        image = tf.cast(image, tf.float32)
        return (image, label, path) if with_paths else (image, label)

    dataset = dataset.map(to_inputs).batch(batch_size, drop_remainder=drop_remainder).prefetch(PREFETCH_BATCHES)
    # Fixed parallelism instead of tf.data.AUTOTUNE: on 2 cores the autotuner's own work slowed
    # fine-tuning from 70 to 39 images/s (benchmarks/training_throughput.py); decoding needs no tuning.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)
