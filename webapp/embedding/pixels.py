"""Photo bytes to model input, without torch: the functions decode processes run, and the
processes themselves.

``prepare`` reproduces open_clip's default image transform (resize the shorter side with
bicubic filtering, centre crop, scale to 0..1, normalise) the way torchvision applies it to a
PIL image, so a photo decoded here gives the vector the API's own preprocessing gives. The
module imports only PIL and numpy, so each decode process starts in a fraction of a second.

``DecodeProcesses`` runs one photo at a time in each of a few separate processes, so that a
decode can be stopped: one that overruns its time, or whose caller has gone, is killed and
replaced (a thread cannot be stopped, and a decoder holding the interpreter stalls every request).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import importlib
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any, TypeVar

import numpy as np
from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"
# CLIP's transform resizes the short side to the model's size and keeps the centre square, so
# the long side of a 1 x 20000 strip would become 4.5 million pixels that are then cropped
# away. Beyond this ratio the long side is centre-cropped before resizing: the square the model
# sees is unchanged and what resizing costs is at most size x (size * MAX_MODEL_ASPECT).
MAX_MODEL_ASPECT = 4
R = TypeVar("R")


@dataclass(frozen=True)
class PixelSpec:
    """What the model's transform does: output size and the normalisation constants."""

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_config(cls, config: dict[str, object] | None) -> PixelSpec | None:
        """From open_clip's ``visual.preprocess_cfg``; None when the transform is not the default
        (another resize mode or filter), so the caller uses the model's own transform."""
        if not config:
            return None
        size = config.get("size")
        if isinstance(size, (tuple, list)):
            if len(size) != 2 or size[0] != size[1]:
                return None
            size = size[0]
        if (
            not isinstance(size, int)
            or config.get("resize_mode", "shortest") != "shortest"
            or config.get("interpolation", "bicubic") != "bicubic"
            or config.get("mode", "RGB") != "RGB"
        ):
            return None
        mean, std = config.get("mean"), config.get("std")
        if not isinstance(mean, (tuple, list)) or not isinstance(std, (tuple, list)):
            return None
        return cls(size, tuple(float(m) for m in mean), tuple(float(s) for s in std))  # type: ignore[arg-type]


def decode_rgb(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")


def resized_size(width: int, height: int, target: int) -> tuple[int, int]:
    """torchvision's Resize(int): the shorter side becomes ``target``, the longer keeps the ratio."""
    if width <= height:
        return target, int(target * height / width)
    return int(target * width / height), target


def model_view(image: Image.Image) -> Image.Image:
    """The image with its long side centre-cropped to ``MAX_MODEL_ASPECT`` times the short one
    (unchanged when within that): all of it that the model's centre crop can see."""
    width, height = image.size
    short = max(1, min(width, height))
    longest = short * MAX_MODEL_ASPECT
    if width > longest:
        left = (width - longest) // 2
        return image.crop((left, 0, left + longest, height))
    if height > longest:
        top = (height - longest) // 2
        return image.crop((0, top, width, top + longest))
    return image


def prepare(image: Image.Image, spec: PixelSpec) -> np.ndarray:
    """An RGB image as the model's normalised CHW float32 input."""
    image = model_view(image)
    width, height = image.size
    new_size = resized_size(width, height, spec.size)
    if new_size != (width, height):
        image = image.resize(new_size, Image.Resampling.BICUBIC)
        width, height = new_size
    if width < spec.size or height < spec.size:  # only for degenerate one-pixel-wide photos
        canvas = Image.new("RGB", (max(width, spec.size), max(height, spec.size)))
        canvas.paste(image, ((canvas.width - width) // 2, (canvas.height - height) // 2))
        image, (width, height) = canvas, canvas.size
    top = int(round((height - spec.size) / 2.0))
    left = int(round((width - spec.size) / 2.0))
    image = image.crop((left, top, left + spec.size, top + spec.size))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1))


def decode_and_prepare(data: bytes, spec: PixelSpec) -> np.ndarray:
    """Run in a decode process: photo bytes to model input."""
    return prepare(decode_rgb(data), spec)


def decode_to_array(data: bytes) -> np.ndarray:
    """Run in a decode process: photo bytes to an RGB HWC uint8 array (the GPU resizes it)."""
    return np.asarray(decode_rgb(data), dtype=np.uint8)


_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Initialiser of a decode process: exit when the worker that started it dies, even by
    SIGKILL, instead of living on as an orphan that holds the worker's pipes open."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before the line above ran
        os._exit(0)


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


class DecodeOverran(Exception):
    """The work ran past its time limit; the process doing it was killed."""


class DecodeProcessDied(Exception):
    """The process doing the work died (a decoder crash); it has been replaced."""


class NoDecodeProcess(Exception):
    """Every decode process stayed busy for as long as the caller could wait."""


def serve(fd: int, parent: int, modules: Sequence[str]) -> None:
    """A decode process, on the socket ``fd``: import ``modules``, say so, then run each
    ``(function, args)`` it is sent and send back ``(True, result)`` or ``(False, exception)``,
    until its parent closes the socket (or dies)."""
    die_with_parent(parent)
    return_freed_pixels_to_the_os()
    for module in modules:
        importlib.import_module(module)
    connection = Connection(fd)
    connection.send(True)
    while True:
        try:
            fn, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            outcome: tuple[bool, Any] = (True, fn(*args))
        except Exception as error:  # the caller's to judge; PIL raises many kinds
            outcome = (False, error)
        try:
            connection.send(outcome)
        except (EOFError, OSError):
            return
        except Exception as error:  # an exception that does not pickle
            connection.send((False, RuntimeError(repr(error))))


@dataclass(eq=False)
class _Process:
    process: subprocess.Popen[bytes]
    connection: Connection

    def exchange(self, message: object) -> tuple[bool, Any]:
        # In a thread. The connection is closed here only, never under a read in progress.
        try:
            self.connection.send(message)
            outcome: tuple[bool, Any] = self.connection.recv()
            return outcome
        except BaseException:
            self.connection.close()
            raise

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        # Reaped aside, so that a killed process never lingers as a zombie.
        threading.Thread(target=self.process.wait, name="photo-decode-reap", daemon=True).start()


def _kill_all(processes: set[_Process]) -> None:
    for one in list(processes):
        one.kill()
    processes.clear()


class DecodeProcesses:
    """Up to ``size`` processes, each doing one piece of photo work at a time.

    Each is a fresh interpreter that imports only what the work needs (``modules``): forking
    the service would copy the model's memory and its threads, and multiprocessing's spawn and
    forkserver re-import the main module, which loads torch. They start on first use and are
    shared by the process (``decode_processes``); the limit on work at once holds per event loop.
    """

    def __init__(self, size: int, modules: tuple[str, ...] = ()) -> None:
        self.size = size
        # Imported when a process starts, so that its first piece of work is not charged the
        # import against its time limit.
        self.modules = modules
        self._idle: list[_Process] = []
        self._alive: set[_Process] = set()
        self._free: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )
        # Processes also end when their socket closes; this ends them when the owner is dropped.
        self._finalizer = weakref.finalize(self, _kill_all, self._alive)

    def _start(self) -> _Process:
        ours, theirs = socket.socketpair()
        code = (
            "import sys; from webapp.embedding.pixels import serve; "
            "serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])"
        )
        with theirs:
            process = subprocess.Popen(
                [sys.executable, "-c", code, str(theirs.fileno()), str(os.getpid()), *self.modules],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
            )
        started = _Process(process, Connection(ours.detach()))
        self._alive.add(started)
        try:
            started.connection.recv()  # ready
        except BaseException:
            self._discard(started)
            raise
        return started

    async def _started(self) -> _Process:
        starting = asyncio.ensure_future(asyncio.to_thread(self._start))
        try:
            return await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The caller left while the process started: keep it for the next one.
            starting.add_done_callback(self._keep)
            raise

    def _keep(self, starting: asyncio.Future[_Process]) -> None:
        if starting.cancelled() or starting.exception() is not None:
            return
        if len(self._idle) < self.size:
            self._idle.append(starting.result())
        else:
            self._discard(starting.result())

    def _discard(self, one: _Process) -> None:
        one.kill()
        self._alive.discard(one)

    async def run(self, fn: Callable[..., R], *args: Any, timeout_s: float, wait_s: float) -> R:
        """``fn(*args)`` in a decode process within ``timeout_s``; its exception is raised here.

        Raises NoDecodeProcess when none is free within ``wait_s``, DecodeOverran past the time
        limit, DecodeProcessDied if the process died. Cancelling the caller kills the process.
        """
        loop = asyncio.get_running_loop()
        free = self._free.get(loop)
        if free is None:
            free = self._free[loop] = asyncio.Semaphore(self.size)
        try:
            async with asyncio.timeout(wait_s):
                await free.acquire()
        except TimeoutError:
            raise NoDecodeProcess() from None
        try:
            try:
                one = self._idle.pop()
            except IndexError:
                try:
                    one = await self._started()
                except (EOFError, OSError):
                    raise DecodeProcessDied() from None
            try:
                async with asyncio.timeout(timeout_s):
                    ok, value = await asyncio.to_thread(one.exchange, (fn, args))
            except TimeoutError:
                self._discard(one)
                raise DecodeOverran() from None
            except (EOFError, OSError):
                self._discard(one)
                raise DecodeProcessDied() from None
            except BaseException:  # cancelled: nobody is waiting for this work any more
                self._discard(one)
                raise
            self._idle.append(one)
        finally:
            free.release()
        if ok:
            result: R = value
            return result
        raise value

    def close(self) -> None:
        self._finalizer()
        self._idle.clear()


_shared_lock = threading.Lock()
_shared: dict[tuple[int, tuple[str, ...]], DecodeProcesses] = {}


def decode_processes(size: int, modules: tuple[str, ...] = ()) -> DecodeProcesses:
    """The process's decode processes of this size and these modules, made on first use."""
    with _shared_lock:
        found = _shared.get((size, modules))
        if found is None:
            found = _shared[(size, modules)] = DecodeProcesses(size, modules)
        return found
