"""The worker's decode stage: photo bytes to a batch of model input, off the event loop.

- On the CPU, photos are decoded and resized in a pool of processes, one per core by default
  (PIL decoding holds the interpreter for part of its work, so threads would not scale).
- With the model on CUDA, JPEGs are decoded on the GPU with nvJPEG
  (``torchvision.io.decode_jpeg(..., device="cuda")``), other formats (PNG, WebP, GIF) in the
  process pool, and every photo is resized and normalised on the GPU.
- A model whose transform is not open_clip's default keeps its own transform, in a thread.

A photo that kills a decode process (a decoder bug) costs only itself: the pool is rebuilt and
the batch's photos are decoded again one at a time, and the one that breaks it again is failed.
A photo that takes longer than the time limit (a file crafted to cost decode work, stored before
uploads were checked for it) is treated the same way: the pool's processes are killed, the batch
is decoded again one photo at a time, and the one that runs out of time again is failed.
"""

from __future__ import annotations

import asyncio
import atexit
import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import structlog
import torch

from webapp.embedding import pixels
from webapp.embedding.embedder import ClipModel
from webapp.embedding.pixels import PixelSpec
from webapp.embedding.processes import die_with_parent

log = structlog.get_logger(__name__)

_pool_lock = threading.Lock()
_pools: dict[int, ProcessPoolExecutor] = {}


def decode_pool(processes: int) -> ProcessPoolExecutor:
    """A process pool shared by the workers of this process, started on first use.

    Its processes are forked, as PyTorch's DataLoader forks its workers: they run only PIL and
    numpy, never torch, and start at once (spawn or forkserver would re-import the caller's
    main module in every process). They exit when their parent dies (the pool is first used
    from the event loop's thread, which lives as long as the worker).
    """
    size = processes or os.cpu_count() or 1
    with _pool_lock:
        pool = _pools.get(size)
        if pool is None:
            context = multiprocessing.get_context("fork")
            pool = _pools[size] = ProcessPoolExecutor(
                max_workers=size,
                mp_context=context,
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return pool


def _discard_pool(pool: ProcessPoolExecutor, kill: bool = False) -> None:
    with _pool_lock:
        for size, known in list(_pools.items()):
            if known is pool:
                del _pools[size]
    if kill:
        # A process still decoding cannot be cancelled, only killed (Python 3.14 adds
        # ProcessPoolExecutor.kill_workers for this; 3.11 has only the private table).
        for process in list(pool._processes.values()):
            process.kill()
    pool.shutdown(wait=False, cancel_futures=True)


class DecodeTimeout(Exception):
    """The photos in the pool did not finish within their time limit."""


@atexit.register
def _shutdown_pools() -> None:
    with _pool_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Decoded:
    """Model input for the photos that decoded, and a reason for each that did not."""

    pixels: torch.Tensor | None
    errors: list[str | None]


class Decoder:
    def __init__(self, clip: ClipModel, processes: int = 0, timeout_s: float = 30.0) -> None:
        self.clip = clip
        self.processes = processes
        self.timeout_s = timeout_s
        """How long one photo's decode may take in the process pool."""
        self.spec = PixelSpec.from_config(getattr(clip.model.visual, "preprocess_cfg", None))
        self.on_gpu = clip.device.type == "cuda"
        self._threads = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def decode(self, photos: Sequence[bytes]) -> Decoded:
        if not photos:
            return Decoded(None, [])
        if self.spec is None:
            return await self._with_model_transform(photos)
        if self.on_gpu:
            return await self._on_gpu(photos, self.spec)
        arrays = await self._in_processes(photos, partial(pixels.decode_and_prepare, spec=self.spec))
        return _stack([torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in arrays])

    async def _in_processes(
        self, photos: Sequence[bytes], fn: Callable[[bytes], np.ndarray]
    ) -> list[np.ndarray | str]:
        """``fn`` over the photos in the pool; a photo's failure is its reason, as text."""
        pool = decode_pool(self.processes)
        # Each process takes its share of the batch in turn: the batch may take that many limits.
        rounds = -(-len(photos) // (self.processes or os.cpu_count() or 1))
        try:
            return await _gather(pool, fn, photos, self.timeout_s * rounds)
        except BrokenProcessPool:
            log.warning("a decode process died; decoding this batch one photo at a time", size=len(photos))
            _discard_pool(pool)
        except DecodeTimeout:
            log.warning("a decode ran out of time; decoding this batch one photo at a time", size=len(photos))
            _discard_pool(pool, kill=True)
        outcomes: list[np.ndarray | str] = []
        for photo in photos:
            pool = decode_pool(self.processes)
            try:
                outcomes.extend(await _gather(pool, fn, [photo], self.timeout_s))
            except BrokenProcessPool:
                _discard_pool(pool)
                outcomes.append("the decoder process died on this photo")
            except DecodeTimeout:
                _discard_pool(pool, kill=True)
                outcomes.append(f"decoding took longer than {self.timeout_s:g} s")
        return outcomes

    async def _with_model_transform(self, photos: Sequence[bytes]) -> Decoded:
        preprocess = self.clip.preprocess

        def one(data: bytes) -> torch.Tensor | str:
            try:
                return preprocess(pixels.model_view(pixels.open_stored_rgb(data)))
            except Exception as error:  # PIL raises OSError, ValueError, SyntaxError...
                return f"could not decode image: {error!r}"

        loop = asyncio.get_running_loop()
        out = await asyncio.gather(*(loop.run_in_executor(self._threads, one, p) for p in photos))
        return _stack(list(out))

    async def _on_gpu(self, photos: Sequence[bytes], spec: PixelSpec) -> Decoded:
        jpegs = [i for i, data in enumerate(photos) if data[:3] == pixels.JPEG_MAGIC]
        others = [i for i in range(len(photos)) if i not in set(jpegs)]
        outcomes: list[torch.Tensor | str] = [""] * len(photos)
        if others:
            arrays = await self._in_processes([photos[i] for i in others], pixels.decode_to_array)
            for i, array in zip(others, arrays, strict=True):
                outcomes[i] = array if isinstance(array, str) else torch.from_numpy(array).permute(2, 0, 1)
        if jpegs:
            loop = asyncio.get_running_loop()
            decoded = await loop.run_in_executor(
                self._threads, decode_jpegs, [photos[i] for i in jpegs], self.clip.device
            )
            for i, image in zip(jpegs, decoded, strict=True):
                outcomes[i] = image
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, resize_on_device, outcomes, spec, self.clip.device)


async def _gather(
    pool: Executor, fn: Callable[[bytes], np.ndarray], photos: Sequence[bytes], timeout_s: float
) -> list[np.ndarray | str]:
    loop = asyncio.get_running_loop()
    futures = [loop.run_in_executor(pool, fn, photo) for photo in photos]
    try:
        async with asyncio.timeout(timeout_s):
            results = await asyncio.gather(*futures, return_exceptions=True)
    except TimeoutError:
        raise DecodeTimeout from None
    out: list[np.ndarray | str] = []
    for result in results:
        if isinstance(result, BrokenProcessPool):
            raise result
        out.append(f"could not decode image: {result!r}" if isinstance(result, BaseException) else result)
    return out


def _stack(outcomes: Sequence[torch.Tensor | str]) -> Decoded:
    tensors = [o for o in outcomes if isinstance(o, torch.Tensor)]
    errors = [o if isinstance(o, str) else None for o in outcomes]
    return Decoded(torch.stack(tensors) if tensors else None, errors)


def decode_jpegs(photos: Sequence[bytes], device: torch.device) -> list[torch.Tensor | str]:
    """JPEG bytes to CHW uint8 tensors on ``device`` (nvJPEG on CUDA), one batch call; a batch
    that fails is decoded photo by photo so that one bad file fails alone."""
    with warnings.catch_warnings():
        # torchvision 0.29 deprecates its image codecs in favour of TorchCodec; decode_jpeg is
        # still the batched nvJPEG entry point here. Moving to TorchCodec is a later change.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _decode_jpegs(photos, device)


def _decode_jpegs(photos: Sequence[bytes], device: torch.device) -> list[torch.Tensor | str]:
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.frombuffer(bytearray(photo), dtype=torch.uint8) for photo in photos]
    try:
        images: Any = decode_jpeg(data, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        return list(images)
    except RuntimeError:
        pass
    out: list[torch.Tensor | str] = []
    for one in data:
        try:
            out.append(decode_jpeg(one, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True))
        except RuntimeError as error:
            try:  # what nvJPEG refuses (some progressive or CMYK files) PIL may read
                array = pixels.decode_to_array(one.numpy().tobytes())
                out.append(torch.from_numpy(array).permute(2, 0, 1).to(device))
            except Exception:  # PIL raises OSError, ValueError, SyntaxError...
                out.append(f"could not decode image: {error!r}")
    return out


def resize_on_device(images: Sequence[torch.Tensor | str], spec: PixelSpec, device: torch.device) -> Decoded:
    """Resize the shorter side (bicubic, antialiased), centre-crop and normalise, on ``device``."""
    from torchvision.transforms.v2 import functional as tv

    mean = torch.tensor(spec.mean, device=device).view(3, 1, 1)
    std = torch.tensor(spec.std, device=device).view(3, 1, 1)
    outcomes: list[torch.Tensor | str] = []
    for image in images:
        if isinstance(image, str):
            outcomes.append(image)
            continue
        height, width = int(image.shape[-2]), int(image.shape[-1])
        longest = max(1, min(width, height)) * pixels.MAX_MODEL_ASPECT
        if width > longest:  # as pixels.model_view: what resizing costs stays bounded
            left = (width - longest) // 2
            image, width = image[..., left : left + longest], longest
        elif height > longest:
            top = (height - longest) // 2
            image, height = image[..., top : top + longest, :], longest
        image = image.to(device, non_blocking=True).float()
        new_width, new_height = pixels.resized_size(width, height, spec.size)
        if (new_width, new_height) != (width, height):
            bicubic = tv.InterpolationMode.BICUBIC
            image = tv.resize(image, [new_height, new_width], interpolation=bicubic, antialias=True)
            image = image.clamp(0.0, 255.0)  # bicubic overshoots; PIL clamps to the 8-bit range
        image = tv.center_crop(image, [spec.size, spec.size])
        outcomes.append((image / 255.0 - mean) / std)
    return _stack(outcomes)
