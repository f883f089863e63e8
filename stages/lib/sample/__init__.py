"""The `sample` source: a small, deterministic, offline stand-in for ``cats_and_dogs_filtered.zip``.

The real dataset cannot be downloaded on an offline machine, so :func:`write_sample_archive` draws cartoon animals
(drawing.py: cats and dogs, and with ``classes`` > 2 the next classes of ``drawing.ANIMALS``) and writes them as a
zip archive with the same layout as the reference archive::

    animals_sample/
        vectorize.py                       stray non-image file, like the reference's own vectorize.py
        train/cats/cat.0.jpg ...           indices 0 .. T-1 (T = number of numbered train files of the class)
        train/dogs/dog.0.jpg ...
        validation/cats/cat.T.jpg ...      indices continue after the train indices of the same class
        validation/dogs/dog.T'.jpg ...
        train/rabbits/rabbit.0.jpg ...     with classes >= 3, and so on (clean: the dirt is in cats and dogs)

plus zip directory entries (``animals_sample/``, ``animals_sample/train/``, ...) as ordinary zip tools
write them. :func:`plan_sample_archive` lists every file with its kind without drawing anything.

Dirty files
-----------
Real photo dumps are dirty, so every archive contains exactly one of each of the following files, whatever the
seed and the sizes (only the number ``N`` in a name depends on the seed; the folder is fixed)::

    file                                     where             kind           the pipeline should
    --------------------------------------   ---------------   ------------   -------------------------------------
    cat.N.jpg that is really a PNG           train/cats        "png_as_jpg"   use it: decode by content, not suffix
    cat.N.jpg cut in the middle              train/cats        "truncated"    drop it: opens, but .load() fails
    Thumbs.db (an OLE header, no image)      train/cats        "thumbs_db"    ignore it at extraction (by name)
    dog.N.jpg, grayscale JPEG (mode "L")     train/dogs        "grayscale"    use it: convert to RGB
    dog.N.jpg that is an HTML 404 page       train/dogs        "text_as_jpg"  drop it: PIL.UnidentifiedImageError
    cat.N.jpg, CMYK JPEG (mode "CMYK")       validation/cats   "cmyk"         use it: convert to RGB
    cat.N.jpg, byte copy of a train cat      validation/cats   "duplicate"    flag it: a train/validation leak
    dog.N.png, RGBA PNG (mode "RGBA")        validation/dogs   "rgba_png"     use it: convert to RGB
    dog.N.jpg of zero bytes                  validation/dogs   "zero_byte"    drop it: PIL.UnidentifiedImageError
    vectorize.py (a small Python script)     top folder        "stray"        ignore it at extraction (not an image)

Every other file is a regular RGB baseline JPEG (kind "image"). The usable dirty files are real drawings of their
folder's class; the RGBA PNG is an opaque scene inside a transparent rounded frame (the RGB under the transparent
corners is still the scene). The duplicate is a byte-for-byte copy of one regular JPEG of train/cats
(``SampleMember.source``) under a validation file name.

Counts
------
``train_per_class`` / ``validation_per_class`` is the number of *distinct usable* images in each class folder:
regular JPEGs plus the usable dirty files of that folder, not counting the duplicate copy. The unusable, ignored and
duplicate files come on top, so the files per folder are::

    train/cats       train_per_class      + 2   (truncated, Thumbs.db)      numbered: train_per_class + 1
    train/dogs       train_per_class      + 1   (text-as-jpg)               numbered: train_per_class + 1
    validation/cats  validation_per_class + 1   (duplicate)                 numbered: validation_per_class + 1
    validation/dogs  validation_per_class + 1   (zero-byte)                 numbered: validation_per_class + 1

plus ``vectorize.py``: ``2 * (train_per_class + validation_per_class) + 6`` files in all. After the pipeline drops
the unusable files and the leaked validation copy, every class folder holds exactly ``*_per_class`` images. Both
counts must be at least 2 (each folder needs its usable dirty file and at least one regular image).

Determinism
-----------
The same arguments give a byte-identical archive (with the same Pillow/libjpeg/zlib build): the image
``<cat|dog>.N.*`` is drawn from its own generator ``np.random.default_rng([seed, class_index, N])``
(:func:`image_rng`), the placement of the dirt from ``np.random.default_rng([seed, _PLAN_KEY, split, class])``;
members are written sorted by name, ``ZIP_STORED``, dated 1980-01-01 00:00:00, with fixed attributes and
``create_system`` 3. Images are rendered in a thread pool, which does not change a byte (each has its own
generator). The default archive (2x200 + 2x100) is ~13 MB and takes ~3-5 s on 2 CPU cores.
"""

from __future__ import annotations

import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stages.lib import files
from stages.lib.sample.drawing import ANIMALS, CLASS_NAMES, class_index, draw_animal

__all__ = ["CLASS_NAMES", "MAX_CLASSES", "plan_sample_archive", "sample_archive_bytes", "write_sample_archive"]

SAMPLE_TOP_FOLDER = "animals_sample"
MAX_CLASSES = len(ANIMALS)
SPLITS = ("train", "validation")

MIN_SIDE = 150
MAX_SIDE = 500
JPEG_QUALITY_RANGE = (70, 95)

# Kinds of member files (see the module docstring).
REGULAR = "image"
USABLE_DIRT = ("png_as_jpg", "grayscale", "cmyk", "rgba_png")
UNUSABLE_DIRT = ("truncated", "zero_byte", "text_as_jpg")
IGNORED_DIRT = ("thumbs_db", "stray")
DUPLICATE = "duplicate"

# Which dirty files go into which class folder (fixed; only their position/index depends on the seed).
DIRT_LAYOUT: dict[tuple[str, str], tuple[str, ...]] = {
    ("train", "cats"): ("png_as_jpg", "truncated", "thumbs_db"),
    ("train", "dogs"): ("grayscale", "text_as_jpg"),
    ("validation", "cats"): ("cmyk", DUPLICATE),
    ("validation", "dogs"): ("rgba_png", "zero_byte"),
}
STRAY_FILE_NAME = "vectorize.py"

_PLAN_KEY = 7_919  # separates the placement generators from the per-image ones

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_FILE_ATTR = (0o100644 & 0xFFFF) << 16
_DIR_ATTR = ((0o040755 & 0xFFFF) << 16) | 0x10

_TEXT_AS_JPG = (
    b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head>\n"
    b"<body><h1>Not Found</h1><p>The requested image was not found on this server.</p></body></html>\n"
)
_THUMBS_DB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # OLE compound file magic, then nothing useful
_STRAY_SCRIPT = b'''"""Stray helper script shipped inside the dataset archive (mirrors the reference's vectorize.py).

It is not part of the data: pipelines must skip non-image files at extraction.
"""
import sys

if __name__ == "__main__":
    sys.exit("nothing to do")
'''


@dataclass(frozen=True)
class SampleMember:
    """One file of the sample archive: where it goes, which class folder it is in and what kind of file it is."""

    arcname: str
    split: str  # "train" / "validation", or "" for the stray top-level file
    class_name: str  # "cats", "dogs", ..., or "" for the stray top-level file
    kind: str  # REGULAR, one of USABLE_DIRT / UNUSABLE_DIRT / IGNORED_DIRT, or DUPLICATE
    index: int = -1  # the number in the file name, -1 for Thumbs.db / vectorize.py
    source: str = ""  # for the duplicate: arcname of the train file it copies


def image_rng(seed: int, label: str | int, index: int) -> np.random.Generator:
    """The generator that draws the image ``<cat|dog>.<index>.*`` of archive ``seed``."""
    return np.random.default_rng([int(seed), class_index(label), int(index)])


def draw_sample_image(rng: np.random.Generator, label: str | int) -> tuple[Image.Image, int]:
    """Draw one random-size scene and its random JPEG quality (as used for every image of the archive)."""
    width, height = (int(v) for v in rng.integers(MIN_SIDE, MAX_SIDE + 1, size=2))
    quality = int(rng.integers(JPEG_QUALITY_RANGE[0], JPEG_QUALITY_RANGE[1] + 1))
    return draw_animal(rng, label, width, height), quality


def _encode(img: Image.Image, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, "JPEG", quality=quality)
    else:
        img.save(buf, fmt)
    return buf.getvalue()


def render_member(seed: int, member: SampleMember) -> bytes:
    """The bytes of one (non-duplicate) archive member."""
    kind = member.kind
    if kind == "zero_byte":
        return b""
    if kind == "text_as_jpg":
        return _TEXT_AS_JPG
    if kind == "thumbs_db":
        return _THUMBS_DB
    if kind == "stray":
        return _STRAY_SCRIPT
    if kind == DUPLICATE:
        raise ValueError("the duplicate is a copy of its source member")
    img, quality = draw_sample_image(image_rng(seed, member.class_name, member.index), member.class_name)
    if kind == REGULAR:
        return _encode(img, "JPEG", quality)
    if kind == "truncated":
        data = _encode(img, "JPEG", quality)
        return data[: len(data) // 2]
    if kind == "png_as_jpg":
        return _encode(img, "PNG", quality)
    if kind == "grayscale":
        return _encode(img.convert("L"), "JPEG", quality)
    if kind == "cmyk":
        return _encode(img.convert("CMYK"), "JPEG", quality)
    if kind == "rgba_png":
        w, h = img.size  # opaque animal scene inside a transparent rounded frame; RGB stays intact underneath
        alpha = Image.new("L", img.size, 0)
        ImageDraw.Draw(alpha).rounded_rectangle([0, 0, w - 1, h - 1], radius=min(w, h) // 6, fill=255)
        rgba = img.convert("RGBA")
        rgba.putalpha(alpha)
        return _encode(rgba, "PNG", quality)
    raise ValueError(f"unknown member kind {kind!r}")


# --------------------------------------------------------------------------------------------------------------------
# The archive
# --------------------------------------------------------------------------------------------------------------------


def plan_sample_archive(
    *, seed: int, train_per_class: int = 200, validation_per_class: int = 100, classes: int = 2
) -> list[SampleMember]:
    """The list of files (no directory entries) :func:`write_sample_archive` writes for these arguments, sorted by
    arcname. Cheap: nothing is drawn."""
    _check_args(seed, train_per_class, validation_per_class, classes)
    members: list[SampleMember] = [SampleMember(f"{SAMPLE_TOP_FOLDER}/{STRAY_FILE_NAME}", "", "", "stray")]
    per_split = {"train": train_per_class, "validation": validation_per_class}
    for ci, animal in enumerate(ANIMALS[:classes]):
        class_name, prefix = animal.name, animal.singular
        next_index = 0
        train_regular: list[SampleMember] = []
        for si, split in enumerate(SPLITS):
            folder = f"{SAMPLE_TOP_FOLDER}/{split}/{class_name}"
            dirt = DIRT_LAYOUT.get((split, class_name), ())
            indexed_dirt = [kind for kind in dirt if kind != "thumbs_db"]
            n_regular = per_split[split] - sum(kind in USABLE_DIRT for kind in dirt)
            kinds = np.array([REGULAR] * n_regular + indexed_dirt, dtype=object)
            rng = np.random.default_rng([int(seed), _PLAN_KEY, si, ci])
            kinds = kinds[rng.permutation(len(kinds))]
            for kind in kinds:
                ext = "png" if kind == "rgba_png" else "jpg"
                member = SampleMember(f"{folder}/{prefix}.{next_index}.{ext}", split, class_name, str(kind), next_index)
                if kind == DUPLICATE:
                    source = train_regular[int(rng.integers(len(train_regular)))]
                    member = SampleMember(member.arcname, split, class_name, DUPLICATE, next_index, source.arcname)
                elif split == "train" and kind == REGULAR:
                    train_regular.append(member)
                members.append(member)
                next_index += 1
            if "thumbs_db" in dirt:
                members.append(SampleMember(f"{folder}/Thumbs.db", split, class_name, "thumbs_db"))
    if sum(m.kind == DUPLICATE for m in members) != 1:  # pragma: no cover - guards DIRT_LAYOUT edits
        raise AssertionError("the plan must contain exactly one duplicate")
    return sorted(members, key=lambda m: m.arcname)


def _check_args(seed: int, train_per_class: int, validation_per_class: int, classes: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if isinstance(classes, bool) or not isinstance(classes, (int, np.integer)) or not 2 <= classes <= MAX_CLASSES:
        raise ValueError(f"classes must be an int from 2 to {MAX_CLASSES}, got {classes!r}")
    for name, value in (("train_per_class", train_per_class), ("validation_per_class", validation_per_class)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
            raise ValueError(f"{name} must be an int >= 2, got {value!r}")


def _worker_count() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus))


def _directories(names: list[str]) -> list[str]:
    dirs = set()
    for name in names:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]) + "/")
    return sorted(dirs)


def sample_archive_bytes(
    *, seed: int, train_per_class: int = 200, validation_per_class: int = 100, classes: int = 2
) -> bytes:
    """The bytes of the zip archive :func:`write_sample_archive` writes (built in memory: ~13 MB for the defaults)."""
    members = plan_sample_archive(
        seed=seed, train_per_class=train_per_class, validation_per_class=validation_per_class, classes=classes
    )
    # Every member is drawn from its own generator, so rendering in threads (Pillow and numpy release the GIL in
    # their heavy parts) gives exactly the same bytes as rendering one after the other.
    to_render = [m for m in members if m.kind != DUPLICATE]
    with ThreadPoolExecutor(max_workers=_worker_count()) as pool:
        rendered = list(pool.map(lambda m: render_member(seed, m), to_render))
    data: dict[str, bytes] = {m.arcname: payload for m, payload in zip(to_render, rendered)}
    for member in members:
        if member.kind == DUPLICATE:
            data[member.arcname] = data[member.source]

    entries: list[tuple[str, bytes | None]] = [(d, None) for d in _directories(list(data))]
    entries += list(data.items())
    entries.sort(key=lambda e: e[0])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, payload in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED  # JPEGs do not compress; no dependence on the zlib version
            info.create_system = 3  # Unix, whatever the platform
            info.external_attr = _DIR_ATTR if payload is None else _FILE_ATTR
            zf.writestr(info, b"" if payload is None else payload)
    return buf.getvalue()


def write_sample_archive(
    path: Path, *, seed: int, train_per_class: int = 200, validation_per_class: int = 100, classes: int = 2
) -> None:
    """Write a deterministic zip archive of a procedurally drawn dataset in the layout of
    cats_and_dogs_filtered.zip: ``<SAMPLE_TOP_FOLDER>/train/<class>/*.jpg`` and
    ``<SAMPLE_TOP_FOLDER>/validation/<class>/*.jpg`` for the first ``classes`` of drawing.ANIMALS (cats, dogs,
    rabbits, ...), plus the dirty files listed in the module docstring (``train_per_class`` /
    ``validation_per_class`` distinct usable images per class folder, both >= 2).

    Same arguments -> byte-identical zip: sorted members, ZIP_STORED, fixed date 1980-01-01 and attributes, all
    randomness from generators derived from ``seed``. Written atomically (a temporary file in the same folder, then
    ``os.replace``), so ``path`` is either absent, the old file or the complete new archive."""
    data = sample_archive_bytes(
        seed=seed, train_per_class=train_per_class, validation_per_class=validation_per_class, classes=classes
    )
    files.write_bytes(Path(path), data)
