"""Open, check and normalise image files with Pillow.

The split stage calls `check_image` on every file once (a full decode, not just a header read), and
the encode stage calls `encode_rgb_jpeg` to store each kept image as an RGB JPEG of a fixed size, and
the predict CLI calls `load_for_model` to turn any image file into a model input.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# Why a file was skipped; metrics/data.json reports every reason, zero or not.
SKIP_REASONS = ("empty", "not_an_image", "truncated", "too_large", "decode_error")


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
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a header parse alone would accept truncated files
            upright = ImageOps.exif_transpose(image)  # a copy, without .format
            return ImageCheck(digest, upright.width, upright.height, image.format or "", image.mode)
    except UnidentifiedImageError:
        return ImageCheck(digest, skip_reason="not_an_image", detail="not a format Pillow can read")
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
    with Image.open(io.BytesIO(data)) as original:
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
        with Image.open(io.BytesIO(data)) as original:
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
