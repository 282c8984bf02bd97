"""Uploaded image bytes: sniffed by content (never by file name), checked, decoded once.

Decoding is where a small file becomes a large allocation (a 150 KB single-colour PNG of
6300x6300 pixels is 159 MB of RGB pixels) or a long computation (a 387 KB JPEG that repeats one
progressive scan 3,000 times). So, before any pixel is decoded:

- the file's structure is walked (JPEG markers, PNG chunk headers) and refused when it asks
  for more scans or chunks than a photo has;
- the header's size gives the memory the decode will hold, including what the model's own
  preprocessing makes of it (the long side of an extreme strip is cropped first, see
  ``pixels.model_view``), and that much of a process-wide ``DecodeBudget`` is held meanwhile;
- the work runs in a separate process (``PhotoDecoder``), killed when it overruns its time or
  when the request that asked for it goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image, ImageOps, UnidentifiedImageError

from webapp.config import LimitsSettings
from webapp.embedding import pixels
from webapp.embedding.pixels import MAX_MODEL_ASPECT, model_view
from webapp.embedding.pixels import return_freed_pixels_to_the_os as return_freed_pixels_to_the_os
from webapp.http.errors import ApiError

R = TypeVar("R")
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


def _busy() -> ApiError:
    return ApiError(
        503,
        "busy",
        "Too many photos are being processed; retry in a few seconds.",
        headers={"Retry-After": "2"},
    )


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
                raise _busy() from None
            self.in_use += nbytes
        try:
            yield
        finally:
            async with self._changed:
                self.in_use -= nbytes
                self._changed.notify_all()


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


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Markers that stand alone, without a length: TEM, RST0-7 (SOI and EOI are handled apart).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


def jpeg_scans(data: bytes, stop_after: int) -> int:
    """How many scans (SOS markers) a JPEG holds, counting no further than ``stop_after + 1``.

    Walks the marker segments by their lengths and each scan's entropy-coded data to the next
    marker (a 0xFF there is followed by a stuffed 0x00 or a restart marker), so bytes inside
    metadata, an embedded thumbnail's included, are never mistaken for markers.
    """
    end = len(data)
    at = 2  # after SOI
    scans = 0
    while at + 4 <= end:
        if data[at] != 0xFF:
            # Bytes between segments: libjpeg skips them to the next marker with a warning,
            # so the count must go on too.
            at = data.find(b"\xff", at)
            if at < 0:
                return scans
            continue
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte before a marker
            at += 1
            continue
        if marker == 0xD9:  # EOI
            return scans
        if marker in _STANDALONE:
            at += 2
            continue
        at += 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if marker != 0xDA:
            continue
        scans += 1
        if scans > stop_after:
            return scans
        while True:  # the scan's entropy-coded data
            at = data.find(b"\xff", at)
            if at < 0 or at + 1 >= end:
                return scans
            following = data[at + 1]
            if following == 0x00 or 0xD0 <= following <= 0xD7:
                at += 2
            elif following == 0xFF:
                at += 1
            else:
                break
    return scans


def png_chunks(data: bytes, stop_after: int) -> int:
    """How many chunks a PNG holds (image data included), counting no further than ``stop_after + 1``.

    Only the 8-byte chunk headers are read: each gives the length of the data to skip.
    """
    at = len(PNG_MAGIC)
    chunks = 0
    while at + 8 <= len(data) and chunks <= stop_after:
        chunks += 1
        if data[at + 4 : at + 8] == b"IEND":
            break
        at += 12 + int.from_bytes(data[at : at + 4], "big")
    return chunks


def _check_structure(data: bytes, max_jpeg_scans: int, max_png_chunks: int) -> None:
    """Refuse a file whose structure asks for more decoding work than any photo needs."""
    if data.startswith(pixels.JPEG_MAGIC):
        scans = jpeg_scans(data, max_jpeg_scans)
        if scans > max_jpeg_scans:
            raise ApiError(
                422,
                "image_too_complex",
                f"The JPEG has more than {max_jpeg_scans} progressive scans (a photo has about 10); "
                "save it again as an ordinary JPEG.",
            )
    elif data.startswith(PNG_MAGIC):
        chunks = png_chunks(data, max_png_chunks)
        if chunks > max_png_chunks:
            raise ApiError(
                422,
                "image_too_complex",
                f"The PNG has more than {max_png_chunks} chunks; save it again without the extra "
                "chunks (or as a JPEG).",
            )


def _model_bytes(width: int, height: int) -> int:
    """Memory the model's input costs after decoding: the reduced, cropped RGB image (sent back
    from the decode process, so twice) and what preprocessing makes of it."""
    short = min(width, height)
    if short >= 2 * MODEL_SIDE:
        factor = short // MODEL_SIDE
        width, height, short = width // factor, height // factor, short // factor
    longest = min(max(width, height), short * MAX_MODEL_ASPECT)
    kept = short * longest * 4
    # Resizing the short side to the model's size (at most MODEL_SIDE), then float CHW input.
    resized = MODEL_SIDE * MODEL_SIDE * MAX_MODEL_ASPECT * 4 + 3 * MODEL_SIDE * MODEL_SIDE * 4
    return 2 * kept + resized


def read_header(
    data: bytes,
    max_bytes: int,
    *,
    for_model: bool = False,
    max_jpeg_scans: int,
    max_png_chunks: int,
) -> ImageHeader:
    """Check size, structure, format and pixel count without decoding, and estimate the memory
    the decode holds (for the model: including its preprocessing)."""
    if not data:
        raise ApiError(422, "empty_image", "The image file is empty; attach a JPEG, PNG or WebP photo.")
    if len(data) > max_bytes:
        raise ApiError(
            413, "payload_too_large", f"The image is {len(data)} bytes; the limit is {max_bytes} bytes."
        )
    # Before Pillow opens it: Pillow reads PNG chunks up to the image data in Python.
    _check_structure(data, max_jpeg_scans, max_png_chunks)
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
                count = image.size[0] * image.size[1]
                decoded = count * _bytes_per_pixel(image.mode)
                # Uploads may be re-encoded upright (a transposed copy); the model needs RGB,
                # then its preprocessing.
                if not for_model:
                    copy = decoded
                else:
                    copy = (0 if image.mode == "RGB" else count * 4) + _model_bytes(*image.size)
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


def check_image(
    data: bytes,
    max_bytes: int,
    *,
    max_jpeg_scans: int,
    max_png_chunks: int,
) -> CheckedImage:
    """Decode every byte (truncated or corrupt data fails here) and drop metadata.

    Raises ApiError (413, 415 or 422). What is returned is what gets stored, served and embedded.
    """
    read_header(data, max_bytes, max_jpeg_scans=max_jpeg_scans, max_png_chunks=max_png_chunks)
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

    Large photos are reduced to about ``MODEL_SIDE`` on their short side, and extreme strips
    cropped to ``MAX_MODEL_ASPECT`` (``pixels.model_view``), so what the embedder batches and
    preprocesses is small whatever was uploaded.
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
    rgb = model_view(rgb)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    return rgb


@dataclass(frozen=True)
class _Refused:
    """An ApiError raised in a decode process, carried back as data."""

    status: int
    code: str
    message: str


def _refusing(fn: Callable[..., R], args: tuple[Any, ...], kwargs: dict[str, Any]) -> R | _Refused:
    # Runs in a decode process.
    try:
        return fn(*args, **kwargs)
    except ApiError as error:
        return _Refused(error.status, error.code, error.message)


class PhotoDecoder:
    """Every decode of a photo that a request sent (photo search, upload, edit), one way.

    The header is read and checked, the decode's memory held against the budget, and the
    decode run, each in a decode process: a time limit stops it, and so does the request
    going away (the process is killed, not left to burn a core for nobody).
    """

    def __init__(self, limits: LimitsSettings, max_bytes: int) -> None:
        self.limits = limits
        self.max_bytes = max_bytes
        self.budget = DecodeBudget(limits.decode_budget_mb * 2**20, limits.decode_wait_s)
        self.processes = pixels.decode_processes(limits.decode_processes, (__name__,))

    def _structure(self) -> dict[str, Any]:
        return {"max_jpeg_scans": self.limits.max_jpeg_scans, "max_png_chunks": self.limits.max_png_chunks}

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        limit = self.limits.decode_timeout_s
        try:
            outcome: R | _Refused = await self.processes.run(
                _refusing, fn, args, kwargs, timeout_s=limit, wait_s=self.limits.decode_wait_s
            )
        except pixels.NoDecodeProcess:
            raise _busy() from None
        except pixels.DecodeOverran:
            raise ApiError(
                422,
                "image_too_complex",
                f"Decoding this image took longer than {limit:g} s; send a smaller or plainer photo.",
            ) from None
        except pixels.DecodeProcessDied:
            raise ApiError(
                422, "undecodable_image", "The image crashed the decoder; it may be corrupt."
            ) from None
        if isinstance(outcome, _Refused):
            raise ApiError(outcome.status, outcome.code, outcome.message)
        return outcome

    async def header(self, data: bytes, *, for_model: bool = False) -> ImageHeader:
        """The checked header (413, 415, 422 as ``read_header``), read in a decode process."""
        return await self._run(read_header, data, self.max_bytes, for_model=for_model, **self._structure())

    async def checked(self, data: bytes) -> CheckedImage:
        """The photo as it will be stored: every byte decoded, metadata dropped (``check_image``)."""
        header = await self.header(data)
        async with self.budget.reserve(header.decode_bytes):
            return await self._run(check_image, data, self.max_bytes, **self._structure())

    async def for_model(self, data: bytes, header: ImageHeader) -> Image.Image:
        """The photo decoded for the model (``decode_rgb``), with ``header`` from ``header(for_model=True)``."""
        async with self.budget.reserve(header.decode_bytes):
            return await self._run(decode_rgb, data)
