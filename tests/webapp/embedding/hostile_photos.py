"""Photos built to cost a decoder much: a long thin strip, a JPEG of many scans, a PNG of many
chunks, and the JPEG segment walk that counts them."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def strip_png(length: int = 40_000) -> bytes:
    """A 1 x ``length`` PNG of a few hundred bytes. Resized as CLIP does, it becomes size x
    size*length pixels: 655 MB for the test model's 64 px input (1 x 4000 for ViT-B-32's 224)."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, length), (120, 40, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, start, end) of each JPEG segment, a scan's entropy-coded data included."""
    found = []
    at = 2
    while data[at + 1] != 0xD9:
        marker = data[at + 1]
        end = at + 2 + int.from_bytes(data[at + 2 : at + 4], "big")
        if marker == 0xDA:
            while True:
                end = data.find(b"\xff", end)
                if data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                    end += 2
                    continue
                break
        found.append((marker, at, end))
        at = end
    return found


def many_scan_jpeg(repeats: int = 3000, side: int = 1024) -> bytes:
    """A progressive JPEG whose last scan (a refinement over every block) comes ``repeats``
    times: 42 KB that cost libjpeg about 2 s of CPU at 1024 px, 7 s at 2048."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (128, 128, 128)).save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    _, start, end = [s for s in segments(data) if s[0] == 0xDA][-1]
    return data[:-2] + data[start:end] * repeats + b"\xff\xd9"


def many_chunk_png(chunks: int = 20_000) -> bytes:
    """An 8x8 PNG with ``chunks`` empty ancillary chunks before its image data."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(buffer, format="PNG")
    png = buffer.getvalue()
    empty = struct.pack(">I", 0) + b"teXt" + struct.pack(">I", zlib.crc32(b"teXt"))
    after_ihdr = 8 + 25
    return png[:after_ihdr] + empty * chunks + png[after_ihdr:]
