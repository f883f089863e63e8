from __future__ import annotations

import io
import os
import threading
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from stages.lib import files, images
from stages.lib.images import (
    ImageRefused,
    check_image,
    check_image_file,
    encode_rgb_jpeg,
    load_for_model,
    read_image_file,
    to_rgb,
)
from tests.conftest import jpeg_bytes


def test_good_jpeg_is_usable_with_size_and_hash():
    data = jpeg_bytes(1, size=(40, 30))
    check = check_image(data)
    assert check.skip_reason is None
    assert (check.width, check.height, check.format, check.mode) == (40, 30, "JPEG", "RGB")
    assert check.sha256 == check_image(bytes(data)).sha256 and len(check.sha256) == 64


@pytest.mark.parametrize(
    ("data", "reason", "said"),
    [
        (b"", "empty", "zero-byte file"),
        (b"this is a text file, not a photo\n", "not_an_image", "not an image"),
        (jpeg_bytes(2, size=(200, 150))[:600], "truncated", "(?i)truncated"),
    ],
)
def test_unusable_files_get_a_reason_and_a_line_saying_it(data: bytes, reason: str, said: str):
    check = check_image(data)
    assert check.skip_reason == reason
    assert check.width == 0
    with pytest.raises(ValueError, match=said):  # predict's line for the file
        load_for_model(data, 16)


def test_png_named_anything_is_usable():
    check = check_image(jpeg_bytes(3, fmt="PNG"))
    assert check.skip_reason is None and check.format == "PNG"


@pytest.mark.parametrize("mode", ["L", "CMYK", "P", "RGB", "RGBA"])
def test_to_rgb_converts_every_mode_and_so_does_the_models_input(mode: str):
    data = jpeg_bytes(4, fmt="JPEG" if mode in ("L", "CMYK", "RGB") else "PNG", mode=mode)
    image = Image.open(io.BytesIO(data))
    assert image.mode == mode
    assert to_rgb(image).mode == "RGB"
    array = load_for_model(data, 16)
    assert array.shape == (16, 16, 3)
    if mode == "L":
        assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()


def test_to_rgb_composites_transparency_over_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))  # fully transparent red
    rgba.putpixel((0, 0), (0, 0, 255, 255))  # one opaque blue pixel
    rgb = np.asarray(to_rgb(rgba))
    assert tuple(rgb[1, 1]) == (255, 255, 255)
    assert tuple(rgb[0, 0]) == (0, 0, 255)
    clear = io.BytesIO()
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(clear, format="PNG")
    assert (load_for_model(clear.getvalue(), 8) == 255).all()  # the models' input likewise


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
    # 60 wide, 20 high, left third black, the rest white, tagged "rotate 90 clockwise to view" (orientation 6):
    # upright it is 20 wide and 60 high, the black part on top.
    pixels = np.full((20, 60, 3), 255, np.uint8)
    pixels[:, :20] = 0
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif)
    data = out.getvalue()
    assert check_image(data).width == 20
    encoded, width, height = encode_rgb_jpeg(data, 0, 95)
    assert (width, height) == (20, 60) and encoded != data
    upright = load_for_model(data, (60, 20))  # the models' input: height x width
    assert upright[:15].mean() < 30 and upright[-30:].mean() > 225


# --- the models' input: load_for_model (predict), as the encode stage stores images -------------------


def test_rgb_jpeg_becomes_a_float32_square_in_0_255():
    array = load_for_model(jpeg_bytes(1, size=(40, 30)), 24)
    assert array.shape == (24, 24, 3) and array.dtype == np.float32
    assert 0 <= array.min() and array.max() <= 255 and array.std() > 10


def test_the_resize_is_the_encode_stages_up_to_its_jpeg_loss():
    # A smooth gradient survives JPEG at quality 100 almost exactly, so what remains is the resize itself.
    x = np.linspace(0, 255, 90)
    pixels = np.stack(np.broadcast_arrays(x[None, :], x[:60, None], 128 + 0 * x[None, :]), axis=-1)
    png = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGB").save(png, format="PNG")
    stored, _, _ = encode_rgb_jpeg(png.getvalue(), 32, quality=100)
    expected = np.asarray(Image.open(io.BytesIO(stored)), dtype=np.float32)
    assert np.abs(load_for_model(png.getvalue(), 32) - expected).mean() < 1.0


# --- files judged before they are read -------------------------------------------------------------


def sparse_file(path, head: bytes, size: int):
    """`head`, then zeros up to `size` bytes, without writing them (a sparse file)."""
    path.write_bytes(head)
    os.truncate(path, size)
    return path


@pytest.mark.parametrize("head", [b"", jpeg_bytes(1, size=(40, 30))], ids=["zeros", "jpeg-header"])
def test_a_huge_file_is_judged_from_its_header_without_holding_it(tmp_path, head: bytes):
    path = sparse_file(tmp_path / "x.jpg", head, 256 << 20)
    tracemalloc.start()
    try:
        check = check_image_file(path)
        with pytest.raises(ImageRefused) as refused:
            read_image_file(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    expected = "not_an_image" if not head else "too_large"
    assert check.skip_reason == refused.value.reason == expected
    assert check.sha256 == files.sha256_file(path)  # still hashed, in chunks
    assert peak < 32 << 20  # not the 256 MiB
    if head:
        assert str(refused.value) == "268,435,456 bytes is far too many for a 40x30 image"


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "MAX_IMAGE_PIXELS", 40 * 30 - 1)
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(2, size=(40, 30)))
    monkeypatch.setattr(Image.Image, "load", lambda self: pytest.fail("decoded"))
    message = "40x30 pixels, over the 1,199 an image may have"
    assert check_image_file(path).skip_reason == "too_large" and check_image_file(path).detail == message
    assert check_image(path.read_bytes()).detail == message
    with pytest.raises(ValueError, match=message):
        images.load_for_model(path.read_bytes(), 16)


@pytest.mark.parametrize(
    ("size", "words"),
    [
        ((10_000, 9_000), "10000x9000 pixels"),  # 90 MP: over Pillow's warning level, under its error
        ((14_000, 14_000), "196,000,000 pixels"),  # over twice the limit: Pillow refuses to open it at all
    ],
)
def test_an_image_pillow_warns_about_is_refused_in_the_project_s_words_alone(tmp_path, size, words):
    """Seen in issue 33: Pillow's raw `DecompressionBombWarning: Image size (90000000 pixels) exceeds limit ...` was
    printed beside the split stage's own skip line; over twice the limit, Pillow's own error (another limit, "DOS
    attack") was the skip's detail and predict's line. In a process of its own, as a stage runs, so that its stderr
    is what a user sees."""
    import subprocess
    import sys

    Image.new("1", size).save(tmp_path / "big.png")
    code = """if True:
        import sys
        from pathlib import Path
        from stages.lib import images
        check = images.check_image_file(Path(sys.argv[1]))
        print(check.skip_reason, check.detail, sep="|")
        try:
            images.load_for_model(Path(sys.argv[1]).read_bytes(), 32)  # what predict calls
        except images.ImageRefused as refused:
            print(refused)
    """
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "big.png")], capture_output=True, text=True)
    line = f"{words}, over the 89,478,485 an image may have"
    assert done.stdout.splitlines() == [f"too_large|{line}", line]
    assert done.stderr == ""


def test_images_up_to_the_limit_are_usable(tmp_path):
    path = tmp_path / "ok.png"
    path.write_bytes(jpeg_bytes(3, size=(64, 48), fmt="PNG"))
    assert read_image_file(path) == path.read_bytes()
    assert check_image_file(path).skip_reason is None and check_image_file(path).width == 64


def test_decodes_in_flight_never_hold_more_pixels_than_the_budget():
    budget = images._PixelBudget(10)
    held, most, lock = [0], [0], threading.Lock()

    def decode(pixels: int) -> None:
        with budget.hold(pixels):
            with lock:
                held[0] += min(pixels, 10)
                most[0] = max(most[0], held[0])
            time.sleep(0.02)
            with lock:
                held[0] -= min(pixels, 10)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(decode, [4, 4, 4, 4, 3, 3, 25, 1, 1, 1]))  # 25: larger than the budget, still runs alone
    assert most[0] <= 10 and held[0] == 0
    assert most[0] >= 8  # and they do run side by side


# --- every format Pillow decodes; every depth stored by its own range -----------------------------------


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def gradient(low: float, high: float, dtype) -> np.ndarray:
    """A 64x64 horizontal gradient from `low` to `high`."""
    return np.tile(np.linspace(low, high, 64), (64, 1)).astype(dtype)


def stored_gray(data: bytes) -> np.ndarray:
    """The encode stage's stored pixels of `data`, as one gray channel (R = G = B)."""
    jpeg, _, _ = encode_rgb_jpeg(data, 0, 95)
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), dtype=np.int16)
    assert np.abs(rgb[..., 0] - rgb[..., 2]).max() <= 2  # gray stays gray
    return rgb[..., 0]


@pytest.mark.parametrize(
    ("pixels", "fmt", "mode"),
    [
        (gradient(0, 65535, np.uint16), "PNG", "I;16"),  # a full-range 16-bit scan
        (gradient(0, 4095, np.uint16), "PNG", "I;16"),  # 12-bit sensor data in a 16-bit file
        (gradient(0, 3_000_000, np.int32), "TIFF", "I"),
        (gradient(-0.5, 2.5, np.float32), "TIFF", "F"),
    ],
    ids=["png16-full", "png16-12bit", "tiff-int32", "tiff-float"],
)
def test_high_bit_depth_is_stored_over_its_own_range(pixels, fmt, mode):
    data = encoded(Image.fromarray(pixels), fmt)
    check = check_image(data)
    assert (check.skip_reason, check.mode) == (None, mode)
    gray = stored_gray(data)
    assert gray[:, :2].mean() < 8 and gray[:, -2:].mean() > 247  # black to white, not flat
    assert np.all(np.diff(gray.mean(axis=0)[2:-2]) >= -2)  # and still a gradient left to right
    model_input = images.load_for_model(data, 64)
    assert model_input[:, 0].mean() < 8 and model_input[:, -1].mean() > 247  # predict reads it the same way


def test_a_flat_high_depth_image_keeps_its_value_and_non_finite_pixels_are_black():
    white = encoded(Image.fromarray(np.full((8, 8), 65535, np.uint16)), "PNG")
    assert stored_gray(white).min() >= 250
    floats = gradient(0, 1, np.float32)
    floats[:, :4] = np.nan
    gray = np.asarray(to_rgb(Image.fromarray(floats)))[..., 0]
    assert gray[:, :4].max() == 0 and gray[:, -1].min() == 255
    nothing = Image.fromarray(np.full((4, 4), np.nan, np.float32))
    assert check_image(encoded(nothing, "TIFF")).skip_reason == "decode_error"


@pytest.mark.parametrize("fmt", ["WEBP", "TIFF", "AVIF", "BMP", "GIF"])
def test_every_format_pillow_decodes_is_usable(fmt):
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    data = encoded(image, fmt)
    check = check_image(data)
    assert (check.skip_reason, check.format, check.width, check.height) == (None, fmt, 32, 24)
    assert images.load_for_model(data, 16).shape == (16, 16, 3)


@pytest.mark.parametrize("mode", ["La", "RGBa", "1", "I;16B", "YCbCr", "LAB", "HSV"])
def test_every_pillow_mode_becomes_rgb(mode):
    assert to_rgb(Image.new(mode, (4, 4))).mode == "RGB"


HEIC_HEAD = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64)
DICOM_HEAD = bytes(128) + b"DICM" + bytes(64)


@pytest.mark.parametrize(
    ("data", "named"),
    [(HEIC_HEAD, "HEIC/HEIF"), (DICOM_HEAD, "DICOM"), (b"%PDF-1.7\n" + bytes(64), "PDF"),
     (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "SVG")],
    ids=["heic", "dicom", "pdf", "svg"],
)  # fmt: skip
def test_a_format_pillow_cannot_decode_is_named_not_called_no_image(tmp_path, data, named):
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    for check in (check_image(data), check_image_file(path)):
        assert check.skip_reason == "unsupported_format"
        assert f"a {named}" in check.detail
    with pytest.raises(ValueError, match=f"a {named}"):
        images.load_for_model(data, 16)
