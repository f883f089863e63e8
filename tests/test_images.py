from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stages.lib.images import check_image, encode_rgb_jpeg, to_rgb
from tests.conftest import jpeg_bytes


def test_good_jpeg_is_usable_with_size_and_hash():
    data = jpeg_bytes(1, size=(40, 30))
    check = check_image(data)
    assert check.skip_reason is None
    assert (check.width, check.height, check.format, check.mode) == (40, 30, "JPEG", "RGB")
    assert check.sha256 == check_image(bytes(data)).sha256 and len(check.sha256) == 64


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"this is a text file, not a photo\n", "not_an_image"),
        (jpeg_bytes(2, size=(200, 150))[:600], "truncated"),
    ],
)
def test_unusable_files_get_a_reason(data: bytes, reason: str):
    check = check_image(data)
    assert check.skip_reason == reason
    assert check.width == 0


def test_png_named_anything_is_usable():
    check = check_image(jpeg_bytes(3, fmt="PNG"))
    assert check.skip_reason is None and check.format == "PNG"


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGB"])
def test_to_rgb_converts_every_mode(mode: str):
    image = Image.open(io.BytesIO(jpeg_bytes(4, fmt="PNG" if mode == "P" else "JPEG", mode=mode)))
    assert image.mode == mode
    assert to_rgb(image).mode == "RGB"


def test_to_rgb_composites_transparency_over_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    rgb = np.asarray(to_rgb(rgba))
    assert tuple(rgb[1, 1]) == (255, 255, 255)
    assert tuple(rgb[0, 0]) == (0, 0, 255)


def test_rgb_jpeg_at_original_size_keeps_its_bytes():
    data = jpeg_bytes(5, size=(41, 33))
    assert encode_rgb_jpeg(data, 0, 95) == (data, 41, 33)


@pytest.mark.parametrize("mode", ["L", "CMYK", "RGBA"])
def test_other_modes_are_stored_as_rgb_jpeg(mode: str):
    data = jpeg_bytes(6, size=(50, 20), mode=mode, fmt="PNG" if mode == "RGBA" else "JPEG")
    encoded, width, height = encode_rgb_jpeg(data, 0, 90)
    stored = Image.open(io.BytesIO(encoded))
    assert (stored.format, stored.mode, stored.size) == ("JPEG", "RGB", (50, 20))
    assert (width, height) == (50, 20)


def test_resize_squashes_to_a_square_deterministically():
    data = jpeg_bytes(7, size=(120, 60))
    first = encode_rgb_jpeg(data, 32, 95)
    assert first[1:] == (32, 32)
    assert Image.open(io.BytesIO(first[0])).size == (32, 32)
    assert encode_rgb_jpeg(data, 32, 95) == first


def test_exif_orientation_is_applied():
    image = Image.fromarray(np.zeros((20, 60, 3), np.uint8))  # 60 wide, 20 high
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees when displayed
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    data = out.getvalue()
    assert check_image(data).width == 20
    encoded, width, height = encode_rgb_jpeg(data, 0, 95)
    assert (width, height) == (20, 60) and encoded != data
