"""Every decode of a photo a request sent, one way: header checked, memory held against a
process-wide budget, work run in a decode process that a time limit or the request going away
stops (webapp/embedding/images.py says what each step guards against)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from PIL import Image

from webapp.config import LimitsSettings
from webapp.embedding import processes
from webapp.embedding.images import CheckedImage, ImageHeader, check_image, decode_rgb, read_header
from webapp.http.errors import ApiError

R = TypeVar("R")


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
        self.processes = processes.decode_processes(limits.decode_processes, (__name__,))

    def _structure(self) -> dict[str, Any]:
        return {"max_jpeg_scans": self.limits.max_jpeg_scans, "max_png_chunks": self.limits.max_png_chunks}

    async def _run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        limit = self.limits.decode_timeout_s
        try:
            outcome: R | _Refused = await self.processes.run(
                _refusing, fn, args, kwargs, timeout_s=limit, wait_s=self.limits.decode_wait_s
            )
        except processes.NoDecodeProcess:
            raise _busy() from None
        except processes.DecodeOverran:
            raise ApiError(
                422,
                "image_too_complex",
                f"Decoding this image took longer than {limit:g} s; send a smaller or plainer photo.",
            ) from None
        except processes.DecodeProcessDied:
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
