"""A small, deterministic, offline stand-in for ``cats_and_dogs_filtered.zip``.

The real dataset cannot be downloaded on an offline machine, so :func:`write_sample_archive` draws cartoon cats and
dogs procedurally and writes them as a zip archive with the same layout as the reference archive::

    cats_and_dogs_sample/
        vectorize.py                       stray non-image file, like the reference's own vectorize.py
        train/cats/cat.0.jpg ...           indices 0 .. T-1 (T = number of numbered train files of the class)
        train/dogs/dog.0.jpg ...
        validation/cats/cat.T.jpg ...      indices continue after the train indices of the same class
        validation/dogs/dog.T'.jpg ...

plus zip directory entries (``cats_and_dogs_sample/``, ``cats_and_dogs_sample/train/``, ...) as ordinary zip tools
write them. :func:`plan_sample_archive` lists every file with its kind without drawing anything.

The images
----------
Every image is a random scene: a two-colour linear gradient at a random angle, 1..6 random clutter shapes (ellipses,
rectangles, triangles and other polygons, lines, pie slices, arcs), and one cartoon animal head, half of the time
with a body, of random fur colour, size (head radius 20..32 % of the shorter side), position (5 % of the time
anywhere, so partly outside the frame; large animals with a body are often cut at the bottom), slight rotation and
stretch; 30 % of the time one or two clutter shapes are drawn in front of it, 30 % of the time it is box-blurred,
then brightness/contrast are jittered and gaussian noise is added. Image size (width and height independently
150..500 px), JPEG quality (70..95), colours, background, clutter and noise come from the *same* distribution for
both classes (eye and nose colours too). The classes differ only in shape:

* cat: round, slightly wide face, upright pointed triangular ears with an inner ear, narrow almond eyes with slit
  pupils, a small triangular nose, a "w" mouth and whiskers;
* dog: slightly tall face, long floppy ears hanging down at the sides, a wide muzzle reaching below the face, a big
  round nose, round eyes with round pupils, sometimes a tongue.

A small CNN (three conv+pool blocks, Flatten, Dense 64) trained on 2x200 images at 100x100 reaches roughly 0.8
validation accuracy after ~10 epochs; per-image mean colour, brightness, image size and file size do not separate
the classes (best single threshold about 0.55-0.6 accuracy).

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
import math
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from stages.lib import files

SAMPLE_TOP_FOLDER = "cats_and_dogs_sample"
CLASS_NAMES = ("cats", "dogs")
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
_FILE_PREFIX = {"cats": "cat", "dogs": "dog"}

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
    class_name: str  # "cats" / "dogs", or "" for the stray top-level file
    kind: str  # REGULAR, one of USABLE_DIRT / UNUSABLE_DIRT / IGNORED_DIRT, or DUPLICATE
    index: int = -1  # the number in the file name, -1 for Thumbs.db / vectorize.py
    source: str = ""  # for the duplicate: arcname of the train file it copies


# --------------------------------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------------------------------

_FUR = np.array(
    [
        (236, 232, 222),  # white
        (226, 202, 160),  # cream
        (212, 170, 92),  # golden
        (206, 122, 52),  # ginger
        (188, 150, 104),  # tan
        (122, 78, 42),  # brown
        (72, 48, 32),  # dark brown
        (132, 132, 138),  # grey
        (92, 92, 100),  # dark grey
        (36, 34, 36),  # black
    ],
    dtype=np.float64,
)
_EYE = np.array([(90, 160, 60), (200, 170, 40), (120, 80, 30), (80, 140, 200), (60, 40, 25)], dtype=np.float64)
_NOSE = np.array([(20, 18, 18), (70, 42, 30), (222, 130, 140), (150, 90, 80)], dtype=np.float64)
_PINK = (226, 140, 150)
_SUPERSAMPLE = 2


def _class_index(label: str | int) -> int:
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool) and int(label) in (0, 1):
        return int(label)
    for i, name in enumerate(CLASS_NAMES):
        if label in (name, _FILE_PREFIX[name]):
            return i
    raise ValueError(f"label must be one of {CLASS_NAMES} (or 0/1), got {label!r}")


def _rgb(c: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(v)))) for v in c)  # type: ignore[return-value]


def _jitter(rng: np.random.Generator, base: np.ndarray, amount: float) -> np.ndarray:
    return np.clip(base + rng.uniform(-amount, amount, size=3), 0, 255)


def _background(rng: np.random.Generator, width: int, height: int, supersample: int) -> Image.Image:
    c1 = rng.uniform(0, 255, size=3).astype(np.float32)
    c2 = rng.uniform(0, 255, size=3).astype(np.float32)
    theta = rng.uniform(0, 2 * math.pi)
    # A linear gradient is computed on a coarse grid and upsampled bilinearly (exact for a linear ramp, and fast).
    gw, gh = 33, 33
    xs = np.linspace(0, width, gw, dtype=np.float32) * math.cos(theta)
    ys = np.linspace(0, height, gh, dtype=np.float32) * math.sin(theta)
    t = ys[:, None] + xs[None, :]
    t -= t.min()
    t /= max(float(t.max()), 1e-6)
    arr = c1 + t[..., None] * (c2 - c1)
    img = Image.fromarray(np.round(arr).astype(np.uint8), "RGB").resize((width, height), Image.Resampling.BILINEAR)
    if supersample > 1:  # nearest upsampling: the final box-filter reduce() gives back exactly these pixels
        img = img.resize((width * supersample, height * supersample), Image.Resampling.NEAREST)
        width, height = img.size
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 7))):
        _clutter_shape(rng, draw, width, height)
    return img


def _clutter_shape(rng: np.random.Generator, draw: ImageDraw.ImageDraw, width: int, height: int) -> None:
    side = min(width, height)
    cx, cy = rng.uniform(0, width), rng.uniform(0, height)
    r = rng.uniform(0.03, 0.22) * side
    colour = _rgb(rng.uniform(0, 255, size=3))
    kind = int(rng.integers(0, 6))
    if kind == 0:
        draw.ellipse([cx - r, cy - r * rng.uniform(0.3, 1.0), cx + r, cy + r * rng.uniform(0.3, 1.0)], fill=colour)
    elif kind == 1:
        draw.rectangle([cx - r, cy - r * rng.uniform(0.2, 1.2), cx + r * rng.uniform(0.2, 1.5), cy + r], fill=colour)
    elif kind == 2:  # triangles and other polygons (distractors for the ears)
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, size=n))
        radii = r * rng.uniform(0.4, 1.0, size=n)
        draw.polygon([(cx + a * math.cos(b), cy + a * math.sin(b)) for a, b in zip(radii, angles)], fill=colour)
    elif kind == 3:
        pts = [(cx, cy)] + [(rng.uniform(0, width), rng.uniform(0, height)) for _ in range(int(rng.integers(1, 3)))]
        draw.line(pts, fill=colour, width=int(rng.integers(1, max(2, side // 40))))
    elif kind == 4:
        start = rng.uniform(0, 360)
        draw.pieslice([cx - r, cy - r, cx + r, cy + r], start, start + rng.uniform(30, 300), fill=colour)
    else:
        draw.arc(
            [cx - r, cy - r, cx + r, cy + r],
            rng.uniform(0, 360),
            rng.uniform(0, 360),
            fill=colour,
            width=int(rng.integers(1, max(2, side // 60))),
        )


class _Pen:
    """Draws in head units (head radius 1, head centre at the origin, y down) onto the (supersampled) image, applying
    the animal's placement: scale ``k`` pixels per unit, anisotropic ``stretch``, rotation ``angle`` and the head
    centre ``origin`` in pixels."""

    def __init__(self, draw, k: float, origin: tuple[float, float], angle: float, stretch: float, outline, line_w):
        self.draw, self.k, self.ox, self.oy = draw, k, origin[0], origin[1]
        self.ca, self.sa, self.stretch = math.cos(angle), math.sin(angle), stretch
        self.outline, self.lw = outline, line_w

    def p(self, x: float, y: float) -> tuple[float, float]:
        x, y = x * self.stretch * self.k, y / self.stretch * self.k
        return (self.ox + x * self.ca - y * self.sa, self.oy + x * self.sa + y * self.ca)

    def ellipse(self, cx, cy, rx, ry, fill, outline=True, angle=0.0) -> None:
        self.poly(_ellipse_points(cx, cy, rx, ry, angle), fill, outline)

    def poly(self, pts, fill, outline=True) -> None:
        xy = [self.p(x, y) for x, y in pts]
        if outline and self.outline is not None:
            self.draw.polygon(xy, fill=fill, outline=self.outline, width=self.lw)
        else:
            self.draw.polygon(xy, fill=fill)

    def line(self, pts, fill, width_units: float) -> None:
        self.draw.line(
            [self.p(x, y) for x, y in pts], fill=fill, width=max(1, round(width_units * self.k)), joint="curve"
        )


def _ellipse_points(cx, cy, rx, ry, angle=0.0, n=40):
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    ca, sa = math.cos(angle), math.sin(angle)
    return list(zip(cx + x * ca - y * sa, cy + x * sa + y * ca))


def _rotate(pts, angle, cx=0.0, cy=0.0):
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def _draw_cat(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    inner = _rgb(_PINK if rng.random() < 0.6 else second)
    # Upright pointed ears, drawn first so the head hides their base.
    phi = rng.uniform(0.55, 0.85)  # where the ears sit on the head (radians from the top)
    ear_half = rng.uniform(0.34, 0.48)
    ear_h = rng.uniform(0.85, 1.25)
    tilt = rng.uniform(-0.05, 0.3)
    for side in (-1, 1):
        bx, by = side * 0.82 * math.sin(phi), -0.82 * math.cos(phi)
        axis = phi * 0.55 + tilt
        ax, ay = side * math.sin(axis), -math.cos(axis)
        apex = (bx + ear_h * ax, by + ear_h * ay)
        left = (bx - ear_half * -ay * side, by - ear_half * ax * side)
        right = (bx + ear_half * -ay * side, by + ear_half * ax * side)
        pen.poly([left, apex, right], fur_c)
        gx, gy = (left[0] + apex[0] + right[0]) / 3, (left[1] + apex[1] + right[1]) / 3
        pen.poly([(gx + 0.55 * (x - gx), gy + 0.55 * (y - gy) + 0.06) for x, y in (left, apex, right)], inner, False)
    rx, ry = rng.uniform(1.0, 1.12), rng.uniform(0.86, 0.98)
    pen.ellipse(0, 0, rx, ry, fur_c)
    if rng.random() < 0.55:  # whisker pads
        for side in (-1, 1):
            pen.ellipse(side * 0.17, 0.42, 0.2, 0.16, second_c, False)
    # Narrow almond eyes with slit pupils.
    ex, ey = rng.uniform(0.34, 0.44), rng.uniform(-0.18, 0.0)
    ew, eh = rng.uniform(0.17, 0.24), rng.uniform(0.07, 0.12)
    slant = rng.uniform(0.05, 0.3)
    xs = np.linspace(-1, 1, 15)
    lens = [(x * ew, -eh * (1 - x * x)) for x in xs] + [(x * ew, eh * (1 - x * x)) for x in xs[::-1]]
    for side in (-1, 1):
        pts = _rotate(lens, -side * slant)
        pen.poly([(side * ex + x, ey + y) for x, y in pts], _rgb(eye))
        pen.ellipse(side * ex, ey, eh * rng.uniform(0.25, 0.45), eh * 0.95, (10, 10, 10), False)
    # Small nose, "w" mouth, whiskers.
    ny, nw = rng.uniform(0.24, 0.32), rng.uniform(0.08, 0.11)
    pen.poly([(-nw, ny - 0.05), (nw, ny - 0.05), (0, ny + 0.06)], _rgb(nose), False)
    dark = _rgb(fur * 0.3)
    pen.line([(0, ny + 0.06), (0, ny + 0.15)], dark, 0.025)
    for side in (-1, 1):
        pen.line([(0, ny + 0.15), (side * 0.08, ny + 0.2), (side * 0.17, ny + 0.14)], dark, 0.025)
    whisker = (245, 245, 240) if rng.random() < 0.5 else (25, 25, 25)
    length = rng.uniform(1.35, 1.8)
    for side in (-1, 1):
        for dy in (-0.1, 0.02, 0.14)[: int(rng.integers(2, 4))]:
            y0 = ny + 0.12 + dy * 0.5
            pen.line([(side * 0.28, y0), (side * length, y0 + dy * 2.2 + rng.uniform(-0.06, 0.06))], whisker, 0.02)


def _draw_dog(rng, pen: _Pen, fur, second, eye, nose) -> None:
    fur_c, second_c = _rgb(fur), _rgb(second)
    rx, ry = rng.uniform(0.84, 0.98), rng.uniform(0.96, 1.1)
    pen.ellipse(0, 0, rx, ry, fur_c)
    # Tongue below the muzzle (drawn first; the muzzle covers its top).
    my, mrx, mry = rng.uniform(0.5, 0.62), rng.uniform(0.5, 0.64), rng.uniform(0.36, 0.46)
    if rng.random() < 0.45:
        pen.ellipse(rng.uniform(-0.1, 0.1), my + mry * 0.8, rng.uniform(0.12, 0.17), rng.uniform(0.18, 0.26), _PINK)
    muzzle_c = second_c if rng.random() < 0.7 else fur_c
    pen.ellipse(0, my, mrx, mry, muzzle_c)
    # Big nose with a highlight, mouth line.
    ny, nrx, nry = my - mry * rng.uniform(0.35, 0.55), rng.uniform(0.2, 0.27), rng.uniform(0.12, 0.17)
    pen.ellipse(0, ny, nrx, nry, _rgb(nose), False)
    pen.ellipse(-nrx * 0.35, ny - nry * 0.35, nrx * 0.22, nry * 0.22, (235, 235, 235), False)
    dark = _rgb(fur * 0.3)
    mouth_y = my + mry * 0.6
    pen.line([(0, ny + nry), (0, mouth_y)], dark, 0.03)
    for side in (-1, 1):
        pen.line([(0, mouth_y), (side * mrx * 0.35, mouth_y + 0.05), (side * mrx * 0.7, mouth_y - 0.06)], dark, 0.03)
    # Round eyes with round pupils and a highlight.
    ex, ey, er = rng.uniform(0.3, 0.4), rng.uniform(-0.25, -0.08), rng.uniform(0.09, 0.14)
    for side in (-1, 1):
        pen.ellipse(side * ex, ey, er, er, _rgb(eye))
        pen.ellipse(side * ex, ey, er * 0.6, er * 0.6, (10, 10, 10), False)
        pen.ellipse(side * ex - er * 0.3, ey - er * 0.3, er * 0.22, er * 0.22, (240, 240, 240), False)
    # Long floppy ears hanging down at the sides, drawn last so they overlap the face.
    ear_c = _rgb(fur * rng.uniform(0.4, 0.7)) if rng.random() < 0.5 else second_c
    ear_len, ear_w = rng.uniform(0.95, 1.45), rng.uniform(0.26, 0.36)
    ax, ay = rng.uniform(0.62, 0.8), rng.uniform(-0.8, -0.55)
    swing = rng.uniform(-0.05, 0.45)  # radians outwards from hanging straight down
    for side in (-1, 1):
        angle = side * swing
        cx, cy = side * ax + side * math.sin(swing) * ear_len / 2, ay + math.cos(swing) * ear_len / 2
        # An elongated drop: wide rounded tip at the bottom, narrower at the top.
        t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
        ys = -np.cos(t) * ear_len / 2
        xs = np.sin(t) * ear_w * (0.7 + 0.3 * (ys / (ear_len / 2) + 1) / 2)
        pts = _rotate(list(zip(xs, ys)), -angle, cx, cy)
        pen.poly(pts, ear_c)


def draw_animal(rng: np.random.Generator, label: str | int, width: int, height: int) -> Image.Image:
    """Draw one random RGB scene of size ``width`` x ``height`` with a cartoon cat or dog in it (pure: all randomness
    comes from ``rng``). ``label`` is ``"cats"``/``"dogs"`` (or ``"cat"``/``"dog"``, or 0/1)."""
    cls = _class_index(label)
    width, height = int(width), int(height)
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    ss = _SUPERSAMPLE  # everything is drawn at ss x the size, then box-filtered down: cheap anti-aliasing
    img = _background(rng, width, height, ss)
    side = min(width, height) * ss

    # Everything here is drawn from the same distribution for both classes, except the class-specific face.
    fur = _jitter(rng, _FUR[rng.integers(len(_FUR))], 22)
    if rng.random() < 0.6:
        second = np.clip(fur + (255 - fur) * rng.uniform(0.35, 0.75), 0, 255)
    else:
        second = fur * rng.uniform(0.35, 0.7)
    eye = _jitter(rng, _EYE[rng.integers(len(_EYE))], 20)
    nose = _jitter(rng, _NOSE[rng.integers(len(_NOSE))], 15)
    k = rng.uniform(0.2, 0.32) * side  # head radius in (supersampled) pixels
    outline = _rgb(fur * 0.35) if rng.random() < 0.9 else None
    angle = math.radians(float(np.clip(rng.normal(0, 9), -22, 22)))
    stretch = rng.uniform(0.9, 1.1)
    if rng.random() < 0.05:  # sometimes partly outside the frame
        centre = (rng.uniform(0.0, 1.0) * width * ss, rng.uniform(0.0, 1.0) * height * ss)
    else:
        centre = (rng.uniform(0.35, 0.65) * width * ss, rng.uniform(0.35, 0.6) * height * ss)
    draw = ImageDraw.Draw(img)
    pen = _Pen(draw, k, centre, angle, stretch, outline, max(1, round(0.035 * k)))
    if rng.random() < 0.5:  # a body below the head
        bx, brx, bry = rng.uniform(-0.2, 0.2), rng.uniform(0.9, 1.35), rng.uniform(0.8, 1.15)
        pen.ellipse(bx, 1.75, brx, bry, _rgb(fur))
        if rng.random() < 0.5:
            pen.ellipse(bx, 1.6, brx * 0.45, bry * 0.6, _rgb(second), False)
    (_draw_cat if cls == 0 else _draw_dog)(rng, pen, fur, second, eye, nose)
    for _ in range(int(rng.integers(1, 3)) if rng.random() < 0.3 else 0):  # occluders in front
        _clutter_shape(rng, draw, width * ss, height * ss)
    img = img.reduce(ss)

    if rng.random() < 0.3:
        img = img.filter(ImageFilter.BoxBlur(rng.uniform(0.4, 1.2)))
    # Brightness/contrast jitter and gaussian (luminance) noise.
    gain, bias, sigma = rng.uniform(0.8, 1.15), rng.uniform(-20, 20), rng.uniform(0, 9)
    arr = np.asarray(img, dtype=np.float32) * np.float32(gain) + np.float32(bias)
    arr += (rng.standard_normal((height, width), dtype=np.float32) * np.float32(sigma))[..., None]
    np.clip(arr, 0, 255, out=arr)
    return Image.fromarray(arr.astype(np.uint8), "RGB")


def image_rng(seed: int, label: str | int, index: int) -> np.random.Generator:
    """The generator that draws the image ``<cat|dog>.<index>.*`` of archive ``seed``."""
    return np.random.default_rng([int(seed), _class_index(label), int(index)])


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
    *, seed: int, train_per_class: int = 200, validation_per_class: int = 100
) -> list[SampleMember]:
    """The list of files (no directory entries) :func:`write_sample_archive` writes for these arguments, sorted by
    arcname. Cheap: nothing is drawn."""
    _check_args(seed, train_per_class, validation_per_class)
    members: list[SampleMember] = [SampleMember(f"{SAMPLE_TOP_FOLDER}/{STRAY_FILE_NAME}", "", "", "stray")]
    per_split = {"train": train_per_class, "validation": validation_per_class}
    for ci, class_name in enumerate(CLASS_NAMES):
        prefix = _FILE_PREFIX[class_name]
        next_index = 0
        train_regular: list[SampleMember] = []
        for si, split in enumerate(SPLITS):
            folder = f"{SAMPLE_TOP_FOLDER}/{split}/{class_name}"
            dirt = DIRT_LAYOUT[(split, class_name)]
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


def _check_args(seed: int, train_per_class: int, validation_per_class: int) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
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


def sample_archive_bytes(*, seed: int, train_per_class: int = 200, validation_per_class: int = 100) -> bytes:
    """The bytes of the zip archive :func:`write_sample_archive` writes (built in memory: ~13 MB for the defaults)."""
    members = plan_sample_archive(seed=seed, train_per_class=train_per_class, validation_per_class=validation_per_class)
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


def write_sample_archive(path: Path, *, seed: int, train_per_class: int = 200, validation_per_class: int = 100) -> None:
    """Write a deterministic zip archive of a procedurally drawn cats-vs-dogs dataset in the layout of
    cats_and_dogs_filtered.zip: ``<SAMPLE_TOP_FOLDER>/train/{cats,dogs}/*.jpg`` and
    ``<SAMPLE_TOP_FOLDER>/validation/{cats,dogs}/*.jpg``, plus the dirty files listed in the module docstring
    (``train_per_class`` / ``validation_per_class`` distinct usable images per class folder, both >= 2).

    Same arguments -> byte-identical zip: sorted members, ZIP_STORED, fixed date 1980-01-01 and attributes, all
    randomness from generators derived from ``seed``. Written atomically (a temporary file in the same folder, then
    ``os.replace``), so ``path`` is either absent, the old file or the complete new archive."""
    data = sample_archive_bytes(seed=seed, train_per_class=train_per_class, validation_per_class=validation_per_class)
    files.write_bytes(Path(path), data)
