"""images.load_for_model: any image file -> the float32 RGB square the models take (used by the predict CLI)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from stages.lib.images import encode_rgb_jpeg, load_for_model
from tests.conftest import jpeg_bytes


def image_bytes(image: Image.Image, fmt: str, **save_args) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **save_args)
    return out.getvalue()


def test_rgb_jpeg_becomes_a_float32_square_in_0_255():
    array = load_for_model(jpeg_bytes(1, size=(40, 30)), 24)
    assert array.shape == (24, 24, 3) and array.dtype == np.float32
    assert 0 <= array.min() and array.max() <= 255 and array.std() > 10


def test_the_resize_is_the_encode_stages_up_to_its_jpeg_loss():
    # A smooth gradient survives JPEG at quality 100 almost exactly, so what remains is the resize itself.
    x = np.linspace(0, 255, 90)
    pixels = np.stack(np.broadcast_arrays(x[None, :], x[:60, None], 128 + 0 * x[None, :]), axis=-1)
    data = image_bytes(Image.fromarray(pixels.astype(np.uint8), "RGB"), "PNG")
    stored, _, _ = encode_rgb_jpeg(data, 32, quality=100)
    expected = np.asarray(Image.open(io.BytesIO(stored)), dtype=np.float32)
    assert np.abs(load_for_model(data, 32) - expected).mean() < 1.0


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGBA"])
def test_other_modes_become_rgb(mode: str):
    fmt = "JPEG" if mode in ("L", "CMYK") else "PNG"
    array = load_for_model(jpeg_bytes(4, mode=mode, fmt=fmt), 16)
    assert array.shape == (16, 16, 3)
    if mode == "L":
        assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_transparency_is_composited_over_white():
    clear = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert (load_for_model(image_bytes(clear, "PNG"), 8) == 255).all()


def test_exif_orientation_is_applied():
    # A 40x20 image, left half black, right half white, tagged "rotate 90 clockwise to view" (orientation 6):
    # upright, the black half is on top.
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, 20:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = image_bytes(Image.fromarray(pixels, "RGB"), "PNG", exif=exif.tobytes())
    array = load_for_model(data, 20)
    assert array[:8].mean() < 20 and array[-8:].mean() > 235


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "zero-byte file"),
        (b"this is a text file, not a photo\n", "not an image"),
        (jpeg_bytes(2, size=(200, 150))[:600], "(?i)truncated"),
    ],
)
def test_unreadable_files_raise_value_error_with_a_reason(data: bytes, reason: str):
    with pytest.raises(ValueError, match=reason):
        load_for_model(data, 16)
