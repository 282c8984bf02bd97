"""Decode processes: photo work that can be stopped.

``DecodeProcesses`` runs one piece of photo work at a time in each of a few separate processes,
so that a decode can be stopped: one that overruns its time, or whose caller has gone, is killed
and replaced (a thread cannot be stopped, and a decoder holding the interpreter stalls every
request). The module imports only the standard library: a decode process starts with it alone,
then imports the modules its work needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import importlib
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

R = TypeVar("R")

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
    16 MB pixel blocks end up in per-thread heaps that are not returned: after a few concurrent
    decodes of large photos a process keeps memory it no longer uses. A fixed threshold disables
    that adjustment (mallopt(3), M_MMAP_THRESHOLD) and the memory goes back at once.
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
            "import sys; from webapp.embedding.processes import serve; "
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
