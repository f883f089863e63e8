"""encode stage: data/splits/*.csv + data/raw -> data/tfrecords/<split>-NNNNN-of-NNNNN.tfrecord + meta.json.

Identical inputs and params give identical bytes, so an unchanged re-run leaves downstream stages alone.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from stages.lib import files, stage_params
from stages.lib.cli import run, stage_parser
from stages.lib.file_lists import SPLITS, read_split
from stages.lib.params import Params

PARAMS = ("seed", "encode.image_size", "encode.jpeg_quality", "encode.examples_per_shard")


def main(argv: list[str] | None = None) -> Params:
    parser = stage_parser(__doc__)
    parser.add_argument("--raw", type=Path, required=True, help="the download stage's class folders")
    parser.add_argument("--splits", type=Path, required=True, help="the split stage's lists")
    parser.add_output("--out", "the records folder to write")
    args = parser.parse_args(argv)
    p = stage_params.for_stage(PARAMS, args.params)
    from stages.lib import records  # TensorFlow only now: --help and a bad param answer in a second

    frames = {split: read_split(args.splits, split) for split in SPLITS}
    labels = frames["train"][["label_index", "label"]].drop_duplicates().sort_values("label_index")
    class_names = labels["label"].tolist()
    # Train is written in a seeded shuffled order so that every shard mixes the classes;
    # val and test keep the sorted order of their CSV.
    order = np.random.default_rng(p.seed).permutation(len(frames["train"]))
    frames["train"] = frames["train"].iloc[order]

    meta = {
        "class_names": class_names,
        "image_size": p.encode.image_size,
        "jpeg_quality": p.encode.jpeg_quality,
        "splits": {},
    }
    with files.replace_dir(args.out) as tmp:
        for split in SPLITS:
            start = time.perf_counter()
            frame = frames[split]
            rows = frame.to_dict("records")
            encoded = records.encode_rows(
                rows, args.raw, image_size=p.encode.image_size, jpeg_quality=p.encode.jpeg_quality
            )
            shards = records.write_shards(encoded, tmp, split, len(rows), p.encode.examples_per_shard)
            per_class = frame["label"].value_counts()
            meta["splits"][split] = {
                "count": len(rows),
                "per_class": {name: int(per_class.get(name, 0)) for name in class_names},
                "shards": shards,
            }
            megabytes = sum((tmp / s).stat().st_size for s in shards) / 1e6
            seconds = time.perf_counter() - start
            rate = len(rows) / seconds
            print(f"encode: {split}: {len(rows)} images, {len(shards)} shards, {megabytes:.1f} MB, {rate:.0f} images/s")
        files.write_json(tmp / records.META_FILE, meta)
    return p


if __name__ == "__main__":
    run(main)
