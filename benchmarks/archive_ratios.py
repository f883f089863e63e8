"""Compression ratios of image members, to choose data.max_compression_ratio: real photos found on this machine
(any JPEG given on the command line) and the sample dataset, each stored as JPEG, PNG and BMP and deflated as
a zip member is, beside the flat images and zeros that compress best.

    .venv/bin/python -m benchmarks.archive_ratios [photo.jpg ...]
"""

from __future__ import annotations

import argparse
import io
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks.common import recorded
from stages.lib.sample import write_sample_archive


def deflate_ratio(data: bytes) -> float:
    return len(data) / len(zlib.compress(data, 9))


def encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def report(name: str, image: Image.Image) -> None:
    ratios = {fmt: deflate_ratio(encoded(image.convert("RGB"), fmt)) for fmt in ("JPEG", "PNG", "BMP")}
    print(f"{name:40s} {image.size[0]:>5}x{image.size[1]:<5} " + "  ".join(f"{k} {v:6.1f}" for k, v in ratios.items()))


@recorded
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("photos", nargs="*", type=Path)
    args = parser.parse_args()
    print("deflate ratio (unpacked / packed) of one image stored as each format")
    for photo in args.photos:
        report(photo.name, Image.open(photo))
    import tempfile
    import zipfile

    with tempfile.TemporaryDirectory() as tmp:
        archive = Path(tmp) / "sample.zip"
        write_sample_archive(archive, seed=0, train_per_class=20, validation_per_class=2)
        with zipfile.ZipFile(archive) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            ratios = [i.file_size / max(i.compress_size, 1) for i in infos]
            print(f"{'sample archive members (as stored)':40s} {len(infos)} members: max {max(ratios):.2f}")
            first = next(i for i in infos if i.filename.endswith(".jpg"))
            report("sample image " + Path(first.filename).name, Image.open(zf.open(first)))
    for side in (32, 224, 1024):
        report(f"flat grey {side}px", Image.new("RGB", (side, side), (128, 128, 128)))
    noise = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    report("random noise 224px", Image.fromarray(noise))
    print(f"{'zeros, 100 MB':40s} deflate {deflate_ratio(bytes(100_000_000)):.0f}")


if __name__ == "__main__":
    main()
