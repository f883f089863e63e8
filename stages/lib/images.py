"""Open, check and normalise image files with Pillow.

The split stage calls `check_image_file` on every file once (a full decode, not just a header read), and
the encode stage calls `encode_rgb_jpeg` to store each kept image as an RGB JPEG of a fixed size, and
the predict CLI calls `load_for_model` to turn any image file into a model input.

Files are read only once their header was parsed and their size judged (`read_image_file`): a 4 GB file is
not read to find it is not an image. Images over MAX_IMAGE_PIXELS are refused before decoding, and the
decodes in flight on all threads together hold at most DECODE_BUDGET_PIXELS, so memory stays bounded
whatever the number of cores.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from stages.lib import files

# Why a file was skipped; metrics/data.json reports every reason, zero or not.
SKIP_REASONS = ("empty", "not_an_image", "truncated", "too_large", "decode_error")

# Pillow's own bomb limit is its warning level (89.5 MP); Pillow refuses only twice that, which decodes to ~0.5 GB
# of RGB and ~3 GB of working copies. The largest camera photos are ~60-100 MP; a dataset image needs far less.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS
# A file is at most 8 bytes per pixel (16-bit RGBA, uncompressed) plus metadata (EXIF, ICC, thumbnails).
_MAX_BYTES_PER_PIXEL = 8
_MAX_METADATA_BYTES = 16 << 20
# Pixels being decoded at once, on all threads: two of the largest images, or thousands of ordinary ones.
DECODE_BUDGET_PIXELS = 2 * MAX_IMAGE_PIXELS


class ImageRefused(ValueError):
    """A file refused before or while decoding: `reason` is one of SKIP_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class _PixelBudget:
    """Decodes hold their pixel count while they run; one that does not fit waits for others to finish."""

    def __init__(self, pixels: int) -> None:
        self._total = self._free = pixels
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = min(pixels, self._total)  # an image alone may always run
        with self._changed:
            self._changed.wait_for(lambda: self._free >= pixels)
            self._free -= pixels
        try:
            yield
        finally:
            with self._changed:
                self._free += pixels
                self._changed.notify_all()


_DECODES = _PixelBudget(DECODE_BUDGET_PIXELS)


@contextlib.contextmanager
def _opened(source: Path | bytes) -> Iterator[Image.Image]:
    """The image with only its header read, refused over MAX_IMAGE_PIXELS, holding its share of the budget."""
    with Image.open(source if isinstance(source, Path) else io.BytesIO(source)) as image:
        width, height = image.size
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageRefused("too_large", f"{width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,} an image may have")
        with _DECODES.hold(width * height):
            yield image


def read_image_file(path: Path) -> bytes:
    """The file's bytes, read only after its header was parsed and its size found plausible for its pixels.

    Raises ImageRefused (a reason of SKIP_REASONS) before reading the rest, OSError if the file cannot be opened.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise ImageRefused("empty", "zero-byte file")
        try:
            with Image.open(file) as header:  # reads the first bytes only; the file stays ours to read
                width, height = header.size
        except UnidentifiedImageError:
            raise ImageRefused("not_an_image", "not an image (no format Pillow can read)") from None
        except Image.DecompressionBombError as exc:
            raise ImageRefused("too_large", str(exc)) from None
        except (OSError, SyntaxError, ValueError) as exc:  # a header cut short or malformed
            reason = "truncated" if "truncated" in str(exc).lower() else "decode_error"
            raise ImageRefused(reason, f"cannot decode the image: {exc or type(exc).__name__}") from None
        if width * height > MAX_IMAGE_PIXELS:
            raise ImageRefused("too_large", f"{width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,} an image may have")
        if size > width * height * _MAX_BYTES_PER_PIXEL + _MAX_METADATA_BYTES:
            raise ImageRefused("too_large", f"{size:,} bytes is far too many for a {width}x{height} image")
        file.seek(0)
        return file.read()


def check_image_file(path: Path) -> ImageCheck:
    """check_image on the file's bytes; a file refused before reading is hashed streaming, never held whole."""
    try:
        return check_image(read_image_file(path))
    except ImageRefused as exc:
        return ImageCheck(files.sha256_file(path), skip_reason=exc.reason, detail=str(exc))


@dataclass(frozen=True)
class ImageCheck:
    sha256: str
    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""
    skip_reason: str | None = None  # one of SKIP_REASONS, or None for a usable image
    detail: str = ""


def check_image(data: bytes) -> ImageCheck:
    """Hash the bytes and fully decode them; a file that cannot be decoded gets a skip reason."""
    digest = hashlib.sha256(data).hexdigest()
    if not data:
        return ImageCheck(digest, skip_reason="empty", detail="zero-byte file")
    try:
        with _opened(data) as image:
            image.load()  # a header parse alone would accept truncated files
            upright = ImageOps.exif_transpose(image)  # a copy, without .format
            return ImageCheck(digest, upright.width, upright.height, image.format or "", image.mode)
    except ImageRefused as exc:
        return ImageCheck(digest, skip_reason=exc.reason, detail=str(exc))
    except UnidentifiedImageError:
        return ImageCheck(digest, skip_reason="not_an_image", detail="not an image (no format Pillow can read)")
    except Image.DecompressionBombError as exc:
        return ImageCheck(digest, skip_reason="too_large", detail=str(exc))
    except (OSError, SyntaxError, ValueError) as exc:
        reason = "truncated" if "truncated" in str(exc).lower() else "decode_error"
        return ImageCheck(digest, skip_reason=reason, detail=str(exc))


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for any mode: grayscale, palette, CMYK; transparency is composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def encode_rgb_jpeg(data: bytes, size: int, quality: int) -> tuple[bytes, int, int]:
    """Return (jpeg_bytes, width, height) of the image as RGB, resized to size x size (0 keeps its size).

    A file that already is an RGB JPEG in the upright orientation and needs no resizing keeps its
    original bytes, so `size: 0` never recompresses a JPEG twice.
    """
    with _opened(data) as original:
        original.load()
        upright = original.getexif().get(ExifTags.Base.Orientation, 1) == 1
        if size == 0 and original.format == "JPEG" and original.mode == "RGB" and upright:
            return data, original.width, original.height
        image = to_rgb(ImageOps.exif_transpose(original))
        if size:
            # Squash to a square like the reference's image_dataset_from_directory; Pillow's bilinear
            # filter widens its support when downscaling, so it does not alias.
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality, optimize=False, progressive=False, subsampling="4:2:0")
        return out.getvalue(), image.width, image.height


def load_for_model(data: bytes, size: int) -> np.ndarray:
    """float32 RGB in [0, 255], size x size x 3: the input every model here takes, from any file Pillow reads.

    Normalised as the encode stage does it (EXIF orientation applied, `to_rgb`, squashed to a square with
    the same BILINEAR resize), but straight to the model's size, without the stored JPEG in between.
    A file that is not a readable image raises ValueError with a one-line reason.
    """
    if not data:
        raise ValueError("zero-byte file")
    try:
        with _opened(data) as original:
            original.load()  # a full decode: a truncated file fails here instead of coming out half grey
            image = to_rgb(ImageOps.exif_transpose(original))
            image = image.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(image, dtype=np.float32)
    except UnidentifiedImageError:
        raise ValueError("not an image (no format Pillow can read)") from None
    except Image.DecompressionBombError as exc:
        raise ValueError(str(exc)) from None
    except (OSError, SyntaxError) as exc:  # truncated or corrupt data
        raise ValueError(f"cannot decode the image: {exc or type(exc).__name__}") from None
