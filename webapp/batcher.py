"""Cross-request batching: concurrent callers share one model call.

A bounded queue in front of one encode function; a batch closes when it is full or its first
item has waited long enough. Callers past the bound get ``Overloaded`` at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from opentelemetry import trace as otel_trace

from webapp.errors import ApiError
from webapp.tracing import tracer

log = structlog.get_logger(__name__)
_tracer = tracer(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(503, "overloaded", message)


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued: float = field(default_factory=time.perf_counter)
    # The caller's trace: its queue-wait and forward-pass spans are recorded under it.
    span: otel_trace.Span = field(default_factory=otel_trace.get_current_span)
    enqueued_ns: int = field(default_factory=time.time_ns)


class MicroBatcher(Generic[T, R]):
    """Queues concurrent requests and runs them through ``encode`` together.

    A batch closes when it holds ``max_batch`` items or ``max_wait_s`` passed since its first
    item. The queue is bounded: when full, callers get ``Overloaded`` at once rather than
    waiting behind an ever-growing backlog.
    """

    def __init__(
        self,
        encode: Callable[[list[T]], Any],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        name: str,
    ) -> None:
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.name = name
        self._queue: asyncio.Queue[_Pending[T, R]] = asyncio.Queue(maxsize=max_queue)
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if not pending.future.done():
                pending.future.set_exception(Overloaded("The service is shutting down."))

    async def submit(self, item: T, deadline_s: float) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(item, future))
        except asyncio.QueueFull:
            raise Overloaded("Search is at capacity right now; retry in a moment.") from None
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline_s)
        except TimeoutError:
            future.cancel()
            raise Overloaded(f"The model did not answer within {deadline_s:g}s; retry in a moment.") from None

    async def _collect(self) -> list[_Pending[T, R]]:
        batch = [await self._queue.get()]
        closes = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = closes - time.perf_counter()
            if remaining <= 0:
                while len(batch) < self.max_batch and not self._queue.empty():
                    batch.append(self._queue.get_nowait())
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        return [p for p in batch if not p.future.done()]  # drop callers that gave up

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            if not batch:
                continue
            started_ns = time.time_ns()
            try:
                results = await self._encode([p.item for p in batch])
            except asyncio.CancelledError:
                for pending in batch:
                    pending.future.cancel()
                raise
            except Exception as error:
                log.exception("batch encode failed", batcher=self.name, size=len(batch))
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(error)
                continue
            self.batches += 1
            self.items += len(batch)
            self._trace(batch, started_ns, time.time_ns())
            for pending, result in zip(batch, results, strict=True):
                if not pending.future.done():
                    pending.future.set_result(result)

    def _trace(self, batch: list[_Pending[T, R]], started_ns: int, ended_ns: int) -> None:
        # One batch serves many requests: each traced caller gets its own wait and forward spans.
        for pending in batch:
            if not pending.span.is_recording():
                continue
            parent = otel_trace.set_span_in_context(pending.span)
            attributes: dict[str, str | int] = {"batcher": self.name, "batch.size": len(batch)}
            wait = _tracer.start_span(
                "embed.queue_wait", parent, attributes=attributes, start_time=pending.enqueued_ns
            )
            wait.end(end_time=started_ns)
            forward = _tracer.start_span("embed.forward", parent, attributes=attributes, start_time=started_ns)
            forward.end(end_time=ended_ns)
