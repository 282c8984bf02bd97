"""Uploaded image bytes: sniffed by content (never by file name), checked, decoded once.

Decoding is where a small file becomes a large allocation (a 150 KB single-colour PNG of
6300x6300 pixels is 159 MB of RGB pixels), so every decode first estimates its memory from the
header and holds that much of a process-wide ``DecodeBudget`` while it runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import io
import sys
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from webapp.errors import ApiError

ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
# Decompression bombs: a few KB of PNG can expand to gigabytes of pixels.
MAX_PIXELS = 40_000_000
# The model looks at 224 px; twice that keeps resampling differences negligible while a large
# photo costs a small fraction of its full decode.
MODEL_SIDE = 448
# Structural entries of Pillow's ``Image.info``; anything else (EXIF, XMP, comments, PNG text,
# Photoshop blocks) is metadata a seller did not mean to publish.
_STRUCTURAL_INFO = frozenset(
    {
        "jfif", "jfif_version", "jfif_unit", "jfif_density", "dpi", "progressive", "progression",
        "adobe", "adobe_transform", "icc_profile", "gamma", "srgb", "chromaticity", "transparency",
        "aspect", "interlace", "loop", "background", "duration", "version", "timestamp",
    }
)  # fmt: skip
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class CheckedImage:
    data: bytes
    format: str
    content_type: str
    width: int
    height: int
    sha256: str

    @property
    def extension(self) -> str:
        return EXTENSIONS[self.format]


@dataclass(frozen=True)
class ImageHeader:
    """What the header says, before any pixel is decoded."""

    format: str
    width: int
    height: int
    decode_bytes: int


class DecodeBudget:
    """Bounds the memory that concurrent decodes hold together (a byte-counting semaphore)."""

    def __init__(self, budget_bytes: int, wait_s: float) -> None:
        self.budget_bytes = budget_bytes
        self.wait_s = wait_s
        self.in_use = 0
        self._changed = asyncio.Condition()

    @contextlib.asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold ``nbytes`` of the budget; 422 if it could never fit, 503 if no room came in time."""
        if nbytes > self.budget_bytes:
            raise ApiError(
                422,
                "image_too_large",
                f"Decoding this image needs about {nbytes // 2**20} MB; the limit is "
                f"{self.budget_bytes // 2**20} MB. Send a smaller photo.",
            )
        async with self._changed:
            try:
                async with asyncio.timeout(self.wait_s):
                    await self._changed.wait_for(lambda: self.in_use + nbytes <= self.budget_bytes)
            except TimeoutError:
                raise ApiError(
                    503,
                    "busy",
                    "Too many photos are being processed; retry in a few seconds.",
                    headers={"Retry-After": "2"},
                ) from None
            self.in_use += nbytes
        try:
            yield
        finally:
            async with self._changed:
                self.in_use -= nbytes
                self._changed.notify_all()


def return_freed_pixels_to_the_os(threshold_bytes: int = 4 * 2**20) -> bool:
    """Make glibc give freed image buffers back at once, instead of keeping them per thread.

    glibc raises its mmap threshold each time a large block is freed (up to 32 MB), so Pillow's
    16 MB pixel blocks end up in per-thread heaps that are not returned: after four concurrent
    6300x6300 decodes a process kept 218 MB it no longer used. A fixed threshold disables that
    adjustment (mallopt(3), M_MMAP_THRESHOLD) and the memory was back within a few MB.
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    m_mmap_threshold = -3
    try:
        return bool(ctypes.CDLL(name).mallopt(m_mmap_threshold, threshold_bytes))
    except (OSError, AttributeError):
        return False  # not glibc (musl has no mallopt)


def _bytes_per_pixel(mode: str) -> int:
    # Pillow stores 1-byte modes in one byte a pixel and everything wider in four.
    return 1 if mode in ("1", "L", "P") else 4


def _open(data: bytes) -> Image.Image:
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as error:
        raise ApiError(
            415,
            "unsupported_media_type",
            "The file is not an image we can read; send a JPEG, PNG, WebP or GIF photo.",
        ) from error


# What Pillow raises for bytes it cannot decode, or would decode into too many pixels.
_DECODE_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


def _undecodable(error: Exception) -> ApiError:
    return ApiError(
        422,
        "undecodable_image",
        f"The image could not be decoded ({error}); it may be truncated or corrupt.",
    )


def read_header(data: bytes, max_bytes: int, *, for_model: bool = False) -> ImageHeader:
    """Check size, format and pixel count from the header alone, and estimate the decode's memory."""
    if not data:
        raise ApiError(422, "empty_image", "The image file is empty; attach a JPEG, PNG or WebP photo.")
    if len(data) > max_bytes:
        raise ApiError(
            413, "payload_too_large", f"The image is {len(data)} bytes; the limit is {max_bytes} bytes."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(data) as image:
                fmt = image.format or ""
                if fmt not in ACCEPTED:
                    raise ApiError(
                        415,
                        "unsupported_media_type",
                        f"{fmt or 'This'} images are not accepted; send JPEG, PNG, WebP or GIF.",
                    )
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ApiError(
                        422,
                        "image_too_large",
                        f"The image is {width}x{height} pixels; the limit is {MAX_PIXELS} pixels.",
                    )
                if for_model:
                    _draft(image)
                pixels = image.size[0] * image.size[1]
                decoded = pixels * _bytes_per_pixel(image.mode)
                # Uploads may be re-encoded upright (a transposed copy); the model needs RGB.
                if not for_model:
                    copy = decoded
                else:
                    copy = 0 if image.mode == "RGB" else pixels * 4
    except ApiError:
        raise
    except _DECODE_ERRORS as error:
        raise _undecodable(error) from error
    # The decoded pixels, a copy where one is made, and room for the decoder's own buffers.
    return ImageHeader(fmt, width, height, decoded + copy + width * height // 8 + 2**20)


def _draft(image: Image.Image) -> None:
    # JPEG can decode at 1/2, 1/4 or 1/8 scale directly from the DCT coefficients.
    if image.format == "JPEG":
        image.draft("RGB", (MODEL_SIDE, MODEL_SIDE))


def _has_metadata(image: Image.Image) -> bool:
    if any(key not in _STRUCTURAL_INFO for key in image.info):
        return True
    orientation: int = image.getexif().get(_ORIENTATION, 1)
    return orientation != 1


def _without_metadata(image: Image.Image) -> bytes:
    """Re-encode upright and without EXIF, XMP or text (the colour profile stays)."""
    upright = ImageOps.exif_transpose(image)
    fmt = image.format or "PNG"
    options: dict[str, object] = {}
    if "icc_profile" in image.info:
        options["icc_profile"] = image.info["icc_profile"]
    if fmt == "JPEG":
        options["quality"] = 95
        if upright.mode not in ("RGB", "L", "CMYK"):
            upright = upright.convert("RGB")
    elif fmt == "WEBP":
        options.update(quality=95, lossless=bool(image.info.get("lossless", False)))
    elif fmt == "GIF" and "transparency" in image.info:
        options["transparency"] = image.info["transparency"]
    out = io.BytesIO()
    upright.save(out, format=fmt, **options)
    return out.getvalue()


def check_image(data: bytes, max_bytes: int) -> CheckedImage:
    """Decode every byte (truncated or corrupt data fails here) and drop metadata.

    Raises ApiError (413, 415 or 422). What is returned is what gets stored, served and embedded.
    """
    read_header(data, max_bytes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with _open(data) as image:
                fmt = image.format or ""
                image.load()
                width, height = image.size
                if _has_metadata(image):
                    data = _without_metadata(image)
                    if image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8):
                        width, height = height, width
    except ApiError:
        raise
    except _DECODE_ERRORS as error:
        raise _undecodable(error) from error
    return CheckedImage(
        data=data,
        format=fmt,
        content_type=ACCEPTED[fmt],
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def decode_rgb(data: bytes) -> Image.Image:
    """Decode to RGB for the model: upright, at reduced size where the format allows it.

    Large photos are reduced to about ``MODEL_SIDE`` on their short side, so what the embedder
    batches is small whatever was uploaded.
    """
    try:
        with _open(data) as image:
            _draft(image)
            image.load()
            orientation = image.getexif().get(_ORIENTATION, 1)
            rgb = image if image.mode == "RGB" else image.convert("RGB")
    except ApiError:
        raise
    except _DECODE_ERRORS as error:
        raise _undecodable(error) from error
    short = min(rgb.size)
    if short >= 2 * MODEL_SIDE:
        rgb = rgb.reduce(short // MODEL_SIDE)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    return rgb
