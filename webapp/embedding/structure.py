"""A photo's structure, walked before any pixel is decoded: a JPEG's scans and a PNG's chunks
are decoding work the header does not show (each progressive scan re-reads every coefficient,
and the decoder handles each PNG chunk in Python), so a file asking for more than a photo needs
is refused from its markers alone."""

from __future__ import annotations

from webapp.embedding.pixels import JPEG_MAGIC
from webapp.http.errors import ApiError

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


def check_structure(data: bytes, max_jpeg_scans: int, max_png_chunks: int) -> None:
    """Refuse a file whose structure asks for more decoding work than any photo needs."""
    if data.startswith(JPEG_MAGIC):
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
