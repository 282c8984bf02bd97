"""The worker's decode stage gives the model the input the API's own preprocessing gives."""

from __future__ import annotations

import asyncio
import io
import os
import time

import numpy as np
import torch
from PIL import Image

from bench.hostile import PeakRss
from tests.webapp.conftest import photo, tree_cpu_s
from webapp.embedding.decoder import Decoder, decode_jpegs, resize_on_device
from webapp.embedding.embedder import ClipModel
from webapp.embedding.pixels import open_stored_rgb


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    Image.open(io.BytesIO(photo(seed))).resize((200, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


async def test_process_pool_decoding_matches_the_model_transform_exactly(tiny_clip: ClipModel) -> None:
    photos = [photo(1), png(2), photo(3)]
    decoded = await Decoder(tiny_clip, processes=2).decode(photos)
    expected = torch.stack([tiny_clip.preprocess(open_stored_rgb(p)) for p in photos])
    assert decoded.errors == [None, None, None]
    assert decoded.pixels is not None and torch.equal(decoded.pixels, expected)


async def test_a_bad_photo_fails_alone_in_its_batch(tiny_clip: ClipModel) -> None:
    decoded = await Decoder(tiny_clip, processes=2).decode([photo(1), b"\xff\xd8\xffnot a jpeg", photo(2)])
    assert decoded.errors[0] is None and decoded.errors[2] is None
    assert decoded.errors[1] is not None and "could not decode image" in decoded.errors[1]
    assert decoded.pixels is not None and decoded.pixels.shape[0] == 2


def test_the_gpu_path_run_on_the_cpu_gives_the_same_vectors(tiny_clip: ClipModel) -> None:
    """nvJPEG decoding plus tensor resizing (here on the CPU device) against PIL: the pixels
    differ by filter rounding only, the embeddings agree."""
    photos = [photo(4), photo(5)]
    images = decode_jpegs(photos, torch.device("cpu"))
    decoded = resize_on_device(images, Decoder(tiny_clip).spec, torch.device("cpu"))  # type: ignore[arg-type]
    assert decoded.pixels is not None
    expected = torch.stack([tiny_clip.preprocess(open_stored_rgb(p)) for p in photos])
    assert float((decoded.pixels - expected).abs().mean()) < 0.01
    ours, theirs = tiny_clip.encode_pixels(decoded.pixels), tiny_clip.encode_pixels(expected)
    assert np.all((ours * theirs).sum(axis=1) > 0.999)


def test_a_strip_is_cropped_before_it_is_resized_on_the_device(tiny_clip: ClipModel) -> None:
    """A 1 x 40000 photo resized whole would be 64 x 2,560,000 float pixels (2 GB) on the device."""
    strip = torch.full((3, 40_000, 1), 100, dtype=torch.uint8)
    with PeakRss(os.getpid()) as memory:
        decoded = resize_on_device([strip], Decoder(tiny_clip).spec, torch.device("cpu"))  # type: ignore[arg-type]
    assert decoded.pixels is not None and tuple(decoded.pixels.shape) == (1, 3, 64, 64)
    assert memory.growth_mb < 300


def _slow_jpeg(repeats: int) -> bytes:
    """A progressive JPEG whose last scan comes ``repeats`` times: small, and slow to decode."""
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (128, 128, 128)).save(buffer, format="JPEG", progressive=True)
    data = buffer.getvalue()
    sos = data.rfind(b"\xff\xda")
    return data[:-2] + data[sos:-2] * repeats + b"\xff\xd9"


async def test_a_photo_past_the_time_limit_fails_alone_and_its_process_is_killed(tiny_clip: ClipModel) -> None:
    # Stored before uploads counted scans: without the limit it holds a decode process for
    # many seconds (and the worker's batch with it).
    slow = _slow_jpeg(10_000)
    decoder = Decoder(tiny_clip, processes=2, timeout_s=1.0)
    started = time.monotonic()
    decoded = await decoder.decode([photo(1), slow, photo(2)])
    assert time.monotonic() - started < 8
    assert decoded.errors[0] is None and decoded.errors[2] is None
    assert decoded.errors[1] == "decoding took longer than 1 s"
    assert decoded.pixels is not None and decoded.pixels.shape[0] == 2
    # No process is left decoding it (it would burn a core), and the next batch decodes as usual.
    before = tree_cpu_s(os.getpid())
    await asyncio.sleep(1.0)
    assert tree_cpu_s(os.getpid()) - before < 0.5
    again = await decoder.decode([photo(3)])
    assert again.errors == [None]
