"""Data for the benchmarks: the sample dataset, generated, extracted, split and encoded with the project's code."""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from stages.lib import files, records, runtime
from stages.lib.archive import extract_archive
from stages.lib.file_lists import SPLITS, make_splits
from stages.lib.layouts import find_layout
from stages.lib.sample import write_sample_archive


def prepare_raw(
    tmp: Path, train_per_class: int, validation_per_class: int = 10, classes: int = 2
) -> tuple[Path, dict[str, pd.DataFrame]]:
    """Generate and extract the sample archive (its first `classes` animals), then split it: (raw folder, split
    frames)."""
    start = time.perf_counter()
    write_sample_archive(
        tmp / "sample.zip",
        seed=0,
        train_per_class=train_per_class,
        validation_per_class=validation_per_class,
        classes=classes,
    )
    extract_archive(
        tmp / "sample.zip", tmp / "extracted", max_members=10**6, max_total_bytes=10**10, max_compression_ratio=100
    )
    raw = tmp / "raw"
    raw.mkdir()
    for folder, source in find_layout(tmp / "extracted").folders.items():
        source.rename(raw / folder)
    frames = make_splits(raw, test_fraction=0.2, holdout_fraction=0.33, seed=0).frames
    count = sum(len(f) for f in frames.values())
    print(f"data: {count} sample images generated, extracted and checked in {time.perf_counter() - start:.1f} s")
    return raw, frames


def encode(raw: Path, frames: dict[str, pd.DataFrame], out: Path, image_size: int) -> float:
    """Encode every split as the encode stage does (train in a seeded order); return seconds spent."""
    out.mkdir(parents=True)
    start = time.perf_counter()
    class_names = sorted(set(frames["train"]["label"]))
    meta = {"class_names": class_names, "image_size": image_size, "jpeg_quality": 95, "splits": {}}
    for split in SPLITS:
        frame = frames[split]
        if split == "train":
            frame = frame.iloc[np.random.default_rng(0).permutation(len(frame))]
        rows = frame.to_dict("records")
        encoded = records.encode_rows(rows, raw, image_size=image_size, jpeg_quality=95)
        shards = records.write_shards(encoded, out, split, len(rows), 500)
        meta["splits"][split] = {"count": len(rows), "shards": shards}
    files.write_json(out / records.META_FILE, meta)
    return time.perf_counter() - start


RESULTS = Path(__file__).parent / "results"


class _Tee(io.TextIOBase):
    def __init__(self, *streams) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for stream in self.streams:
            stream.write(text)
        return len(text)

    def flush(self) -> None:
        for stream in self.streams:
            stream.flush()


def recorded(main: Callable[[], None], part: str | None = None) -> Callable[[], None]:
    """`main` printing as it does, and what it printed written to benchmarks/results/<benchmark>.json (or
    <benchmark>_<part>.json, for a benchmark whose parts run apart) with the command line and the machine it ran on:
    each number lives beside the code that measured it, and a new measurement is a new file, not a prose edit."""

    @functools.wraps(main)
    def run() -> None:
        printed = io.StringIO()
        with contextlib.redirect_stdout(_Tee(sys.stdout, printed)):
            main()
        if "tensorflow" in sys.modules:  # the stages' own description, with whether oneDNN ran
            machine = runtime.machine()
        else:
            cpu, features = runtime.cpu_info()
            machine = {"machine.cpu": cpu, "machine.cpu_features": " ".join(features)}
        machine["machine.cores"] = os.cpu_count()
        spec = getattr(sys.modules["__main__"], "__spec__", None)  # run as `python -m benchmarks.<name>`
        module = spec.name if spec is not None else main.__module__
        name = module.rsplit(".", 1)[-1] + (f"_{part}" if part else "")
        RESULTS.mkdir(exist_ok=True)
        result = {"command": " ".join(["python -m", module, *sys.argv[1:]]), "machine": machine,
                  "printed": printed.getvalue().splitlines()}  # fmt: skip
        files.write_json(RESULTS / f"{name}.json", result)

    return run
