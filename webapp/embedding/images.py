"""Uploaded image bytes: sniffed by content (never by file name), checked, decoded once.

Decoding is where a small file becomes a large allocation (a single-colour PNG compresses
thousands of pixels a side into a few kilobytes) or a long computation (a JPEG that repeats one
progressive scan thousands of times). So, before any pixel is decoded:

- the file's structure is walked (JPEG markers, PNG chunk headers) and refused when it asks
  for more scans or chunks than a photo has;
- the header's size gives the memory the decode will hold, including what the model's own
  preprocessing makes of it (the long side of an extreme strip is cropped first, see
  ``pixels.model_view``), and that much of a process-wide budget
  (``photo_decoder.DecodeBudget``) is held meanwhile;
- the work runs in a separate process (``photo_decoder.PhotoDecoder``), killed when it overruns
  its time or when the request that asked for it goes away.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

from webapp.embedding.pixels import MAX_MODEL_ASPECT, model_view
from webapp.embedding.structure import check_structure
from webapp.http.errors import ApiError

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
    check_structure(data, max_jpeg_scans, max_png_chunks)
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
