"""Uploaded image bytes: sniffed by content (never by file name), checked, decoded."""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from webapp.errors import ApiError

ACCEPTED = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif"}
# Decompression bombs: a few KB of PNG can expand to gigabytes of pixels.
MAX_PIXELS = 40_000_000


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


def check_image(data: bytes, max_bytes: int) -> CheckedImage:
    """Return facts about an acceptable image, or raise ApiError (413, 415 or 422)."""
    if not data:
        raise ApiError(422, "empty_image", "The image file is empty; attach a JPEG, PNG or WebP photo.")
    if len(data) > max_bytes:
        raise ApiError(
            413,
            "payload_too_large",
            f"The image is {len(data)} bytes; the limit is {max_bytes} bytes.",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
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
                image.load()  # decodes every byte: truncated or corrupt data fails here
    except ApiError:
        raise
    except UnidentifiedImageError as error:
        raise ApiError(
            415,
            "unsupported_media_type",
            "The file is not an image we can read; send a JPEG, PNG, WebP or GIF photo.",
        ) from error
    except (
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise ApiError(
            422,
            "undecodable_image",
            f"The image could not be decoded ({error}); it may be truncated or corrupt.",
        ) from error
    return CheckedImage(
        data=data,
        format=fmt,
        content_type=ACCEPTED[fmt],
        width=width,
        height=height,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def decode_rgb(data: bytes) -> Image.Image:
    """Decode to RGB for the model (the bytes were checked at upload)."""
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")
