"""Open, check and normalise image files with Pillow: the one place that decides what is a usable image.

Every stage and `predict` go through `decoded`: the split stage calls `check_image_file` on every file once (a
full decode and the conversion, not just a header read), the encode stage calls `encode_rgb_jpeg` to store each
kept image as an RGB JPEG of a fixed size, the predict CLI calls `load_for_model`, and the report's grid draws
its thumbnails with it. So the pipeline and `predict` accept exactly the same files, whatever their names: every
format Pillow decodes (JPEG, PNG, WebP, TIFF, AVIF, BMP, GIF, ...), by content, never by suffix. A file Pillow
cannot decode is `unsupported_format` when its first bytes say what it is (HEIC, JPEG XL, DICOM, SVG, PDF, ...),
else `not_an_image`.

Pixel modes: EXIF orientation is applied, transparency composited over white, and everything becomes 8-bit RGB.
Grayscale of more than 8 bits (16-bit PNG and TIFF, 32-bit integer and float TIFF) is stretched from its own
darkest to its brightest pixel (`to_8bit`).

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
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from stages.lib import files

# Why a file was skipped; metrics/data.json reports every reason, zero or not.
SKIP_REASONS = ("empty", "not_an_image", "unsupported_format", "truncated", "too_large", "decode_error")

# Pillow's own bomb limit is its warning level (89.5 MP); Pillow refuses only twice that, which decodes to ~0.5 GB
# of RGB and ~3 GB of working copies. The largest camera photos are ~60-100 MP; a dataset image needs far less.
MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS
# Every image Pillow warns about is over MAX_IMAGE_PIXELS, refused here with a line of our own (too_large): its raw
# DecompressionBombWarning would only be printed beside that line. (A filter for the process: every image is read here.)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# A file is at most 8 bytes per pixel (16-bit RGBA, uncompressed) plus metadata (EXIF, ICC, thumbnails).
_MAX_BYTES_PER_PIXEL = 8
_MAX_METADATA_BYTES = 16 << 20
# Pixels being decoded at once, on all threads: two of the largest images, or thousands of ordinary ones.
DECODE_BUDGET_PIXELS = 2 * MAX_IMAGE_PIXELS
# Bytes of a file's start read to tell what an undecodable file is.
_SNIFF_BYTES = 4096

# Image formats Pillow has no decoder for (here), told by their first bytes: (test, name, what to do).
_CONVERT = "convert it to JPEG or PNG"
_UNSUPPORTED = (
    (
        lambda head: (
            head[4:8] == b"ftyp"
            and head[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
        ),  # fmt: skip
        "HEIC/HEIF",
        "install the pillow-heif plugin or " + _CONVERT,
    ),
    (lambda head: head[4:8] == b"ftyp" and head[8:12] in (b"avif", b"avis"), "AVIF", _CONVERT),
    (lambda head: head[4:8] == b"ftyp" and head[8:12] == b"crx ", "Canon CR3 raw", _CONVERT),
    (lambda head: head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")), "JPEG XL", _CONVERT),
    (lambda head: head[128:132] == b"DICM", "DICOM", "export its pixels as 16-bit PNG (e.g. with pydicom)"),
    (lambda head: head.startswith(b"%PDF"), "PDF", _CONVERT),
    (lambda head: head.startswith(b"v/1\x01"), "OpenEXR", _CONVERT),
    (lambda head: b"<svg" in head[:1024].lower(), "SVG (a vector drawing)", "render it to PNG"),
)

# Grayscale modes of more than 8 bits per pixel: 16-bit (PNG, TIFF), 32-bit integer and 32-bit float (TIFF).
HIGH_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
# Premultiplied-alpha modes, un-premultiplied before compositing (Pillow converts La to LA only).
_PREMULTIPLIED = {"La": "LA", "RGBa": "RGBA"}


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


def _unidentified(head: bytes) -> ImageRefused:
    """The refusal of a file Pillow cannot identify: named by its first bytes when they say what it is."""
    for test, name, advice in _UNSUPPORTED:
        if test(head):
            return ImageRefused("unsupported_format", f"a {name} file, which Pillow cannot decode here; {advice}")
    return ImageRefused("not_an_image", "not an image (no format Pillow can read)")


def _damaged(exc: BaseException) -> ImageRefused:
    """The refusal of a file whose header or data Pillow could not decode."""
    reason = "truncated" if "truncated" in str(exc).lower() else "decode_error"
    return ImageRefused(reason, f"cannot decode the image: {exc or type(exc).__name__}")


def _open(data: bytes) -> Image.Image:
    """The image with only its header read; ImageRefused for anything Pillow cannot open."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise _unidentified(data[:_SNIFF_BYTES]) from None
    except Image.DecompressionBombError as exc:
        raise _too_large(exc) from None
    except (OSError, SyntaxError, ValueError) as exc:  # a header cut short or malformed
        raise _damaged(exc) from None


def _too_large(exc: Image.DecompressionBombError) -> ImageRefused:
    """Pillow refuses to open an image of over twice its limit (ours too) before its size reaches us; its message
    names its own limit and a "DOS attack", so the refusal says what _refuse_over_limit says, with the count Pillow
    gives where it gives one."""
    pixels = re.search(r"\((\d+) pixels\)", str(exc))
    return _over_limit(f"{int(pixels.group(1)):,} pixels" if pixels else f"more than {2 * MAX_IMAGE_PIXELS:,} pixels")


def _over_limit(size: str) -> ImageRefused:
    return ImageRefused("too_large", f"{size}, over the {MAX_IMAGE_PIXELS:,} an image may have")


def _refuse_over_limit(width: int, height: int) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise _over_limit(f"{width}x{height} pixels")


def read_image_file(path: Path) -> bytes:
    """The file's bytes, read only after its header was parsed and its size found plausible for its pixels.

    Raises ImageRefused (a reason of SKIP_REASONS) before reading the rest, OSError if the file cannot be opened.
    """
    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size
        if size == 0:
            raise ImageRefused("empty", "zero-byte file")
        head = file.read(_SNIFF_BYTES)
        file.seek(0)
        try:
            with Image.open(file) as header:  # reads the first bytes only; the file stays ours to read
                width, height = header.size
        except UnidentifiedImageError:
            raise _unidentified(head) from None
        except Image.DecompressionBombError as exc:
            raise _too_large(exc) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise _damaged(exc) from None
        _refuse_over_limit(width, height)
        if size > width * height * _MAX_BYTES_PER_PIXEL + _MAX_METADATA_BYTES:
            raise ImageRefused("too_large", f"{size:,} bytes is far too many for a {width}x{height} image")
        file.seek(0)
        return file.read()


@dataclass(frozen=True)
class Decoded:
    image: Image.Image  # 8-bit RGB, upright
    format: str  # of the file, as Pillow names it (JPEG, PNG, WEBP, TIFF, ...)
    mode: str  # of the file's pixels, before the conversion
    upright: bool  # the file needed no EXIF rotation


@contextlib.contextmanager
def decoded(data: bytes) -> Iterator[Decoded]:
    """The image in `data` fully decoded and converted to 8-bit RGB (`to_rgb`), upright (EXIF orientation
    applied), holding its share of the decode budget while the caller uses it.

    Every way a file can fail becomes ImageRefused with a reason of SKIP_REASONS: this is the one decision of
    what a usable image is, for the split stage, the encode stage and predict alike.
    """
    if not data:
        raise ImageRefused("empty", "zero-byte file")
    with _open(data) as original:
        _refuse_over_limit(*original.size)
        with _DECODES.hold(original.size[0] * original.size[1]):
            upright = original.getexif().get(ExifTags.Base.Orientation, 1) == 1
            yield Decoded(_rgb_upright(original), original.format or "", original.mode, upright)


def _rgb_upright(original: Image.Image) -> Image.Image:
    if isinstance(original, ImageFile.StubImageFile):  # identified, but Pillow ships no decoder for it
        raise ImageRefused("unsupported_format", f"a {original.format} file, which Pillow cannot decode here")
    try:
        original.load()  # a full decode: a header parse alone would accept truncated files
        return to_rgb(ImageOps.exif_transpose(original))
    except ImageRefused:
        raise
    except Image.DecompressionBombError as exc:
        raise _too_large(exc) from None
    except (OSError, SyntaxError, ValueError) as exc:
        if "ghostscript" in str(exc).lower():  # EPS
            raise ImageRefused("unsupported_format", f"a {original.format} file, which needs Ghostscript") from None
        raise _damaged(exc) from None


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
    """Hash the bytes, decode and convert them as every stage will; a file that fails gets a skip reason."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        with decoded(data) as image:
            return ImageCheck(digest, image.image.width, image.image.height, image.format, image.mode)
    except ImageRefused as exc:
        return ImageCheck(digest, skip_reason=exc.reason, detail=str(exc))


def to_8bit(image: Image.Image) -> Image.Image:
    """An 8-bit grayscale (L) image of a HIGH_DEPTH_MODES one, its own range stretched over 0-255.

    The image's range, not its mode's full scale: a 16-bit file rarely holds 16 bits (X-ray, microscopy and
    scanner sensors give 10-14, stored in 16-bit containers), so dividing by 65535 would store such images
    nearly black, and 32-bit integer and float pixels have no common full scale at all. (Pillow's own
    conversion clips at 255, which stores them nearly white.) A flat image, which has no range, keeps its
    value on the mode's scale (0-65535 for integers, 0-1 for floats); pixels that are not finite become black.
    """
    values = np.asarray(image, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise ImageRefused("decode_error", f"a {image.mode} image without one finite pixel value")
    low, high = float(finite.min()), float(finite.max())
    if high <= low:
        low, high = 0.0, (1.0 if image.mode == "F" else 65535.0)
    scaled = np.nan_to_num((values - low) / (high - low) * 255, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.round(scaled), 0, 255).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB for any mode: grayscale of any depth (`to_8bit`), palette, CMYK, ...; transparency is
    composited over white."""
    if image.mode == "RGB":
        return image
    if image.mode in HIGH_DEPTH_MODES:
        return to_8bit(image).convert("RGB")
    if image.mode in _PREMULTIPLIED:
        image = image.convert(_PREMULTIPLIED[image.mode])
    try:
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")
    except ValueError as exc:  # a mode Pillow reads but cannot convert
        raise ImageRefused("unsupported_format", f"pixels of mode {image.mode}, which Pillow cannot convert to RGB "
                           f"({exc})") from None  # fmt: skip


def encode_rgb_jpeg(data: bytes, size: int, quality: int) -> tuple[bytes, int, int]:
    """Return (jpeg_bytes, width, height) of the image as RGB, resized to size x size (0 keeps its size).

    A file that already is an RGB JPEG in the upright orientation and needs no resizing keeps its
    original bytes, so `size: 0` never recompresses a JPEG twice.
    """
    with decoded(data) as source:
        image = source.image
        if size == 0 and source.format == "JPEG" and source.mode == "RGB" and source.upright:
            return data, image.width, image.height
        if size:
            # Squash to a square like the reference's image_dataset_from_directory; Pillow's bilinear
            # filter widens its support when downscaling, so it does not alias.
            image = image.resize((size, size), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=quality, optimize=False, progressive=False, subsampling="4:2:0")
        return out.getvalue(), image.width, image.height


def load_for_model(data: bytes, size: int | tuple[int, int]) -> np.ndarray:
    """float32 RGB in [0, 255], size x size x 3 (or height x width x 3 for a pair): the input every model here
    takes, from any file `decoded` accepts.

    Normalised as the encode stage does it (EXIF orientation applied, `to_rgb`, squashed to the model's shape
    with the same BILINEAR resize), but straight to the model's size, without the stored JPEG in between.
    A file that is not a usable image raises ImageRefused (a ValueError) with a one-line reason.
    """
    height, width = (size, size) if isinstance(size, int) else size
    with decoded(data) as source:
        return np.asarray(source.image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def thumbnail(data: bytes, pixels: int) -> Image.Image:
    """The image as every stage sees it (`decoded`), shrunk to fit pixels x pixels, for figures."""
    with decoded(data) as source:
        image = source.image.copy()
    image.thumbnail((pixels, pixels))
    return image
