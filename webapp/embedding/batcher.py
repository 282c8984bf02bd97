"""Cross-request batching: concurrent callers share one model call.

Items wait in per-length buckets in front of one encode function. A batch takes items from one
bucket only (so short queries never pay for a long one's sequence length). It waits for more
items only while it is smaller than what the model can run within a time budget (the cap
follows a cost model fitted to the batches actually run) and its first item has not waited
long enough; then it takes every item of its bucket already waiting, up to ``max_batch``.

Admission control: a caller whose predicted wait already exceeds its deadline gets
``Overloaded`` (503 with Retry-After) at once instead of joining a backlog that would only make
everyone late. So does a caller past the queue bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import structlog
from opentelemetry import trace as otel_trace

from webapp.http.errors import ApiError
from webapp.observability.tracing import tracer

log = structlog.get_logger(__name__)
_tracer = tracer(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(ApiError):
    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(503, "overloaded", message)
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


class BatchCost:
    """Seconds a batch takes, as ``fixed + per_unit * units``, fitted to observed batches.

    ``units`` is the batch size times the cost weight of its bucket (its sequence length for
    text). Exponentially weighted least squares, so the fit follows a machine whose load
    changes (other processes taking cores). Until two different batch sizes have been seen, the
    fixed part is taken as zero, which overestimates the cost per unit: batches start small.
    """

    def __init__(
        self, *, decay: float = 0.95, prior_fixed_s: float = 0.0, prior_per_unit_s: float = 0.0
    ) -> None:
        self.decay = decay
        self._w = self._x = self._y = self._xx = self._xy = 0.0
        self.fixed_s = prior_fixed_s
        self.per_unit_s = prior_per_unit_s

    @property
    def known(self) -> bool:
        return self.per_unit_s > 0

    def observe(self, units: float, seconds: float) -> None:
        d = self.decay
        self._w = d * self._w + 1.0
        self._x = d * self._x + units
        self._y = d * self._y + seconds
        self._xx = d * self._xx + units * units
        self._xy = d * self._xy + units * seconds
        mean_x, mean_y = self._x / self._w, self._y / self._w
        var_x = self._xx / self._w - mean_x * mean_x
        slope = (self._xy / self._w - mean_x * mean_y) / var_x if var_x > 1e-9 * max(1.0, mean_x**2) else 0.0
        fixed = mean_y - slope * mean_x
        if slope <= 0 or fixed < 0:
            # Too little spread in batch sizes (or noise) to separate the parts: all per unit.
            fixed, slope = 0.0, mean_y / max(mean_x, 1e-9)
        self.fixed_s, self.per_unit_s = fixed, slope

    def seconds(self, units: float) -> float:
        return self.fixed_s + self.per_unit_s * units

    def max_units(self, budget_s: float) -> float:
        """Most units one batch can hold and still finish within ``budget_s``."""
        if not self.known:
            return math.inf
        return (budget_s - self.fixed_s) / self.per_unit_s


@dataclass
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    weight: int
    enqueued: float = field(default_factory=time.perf_counter)
    # The caller's trace: its queue-wait and forward-pass spans are recorded under it.
    span: otel_trace.Span = field(default_factory=otel_trace.get_current_span)
    enqueued_ns: int = field(default_factory=time.time_ns)


def _unit_weight(item: Any) -> int:
    return 1


class MicroBatcher(Generic[T, R]):
    """Queues concurrent requests and runs them through ``encode`` together.

    ``bucket(item)`` gives an item's cost weight (for text, its padded token length); items of
    one weight are batched together. A batch waits for more items until it holds what fits in
    ``budget_s`` (once the cost model knows the machine; ``max_batch`` before) or ``max_wait_s``
    after its first item arrived, then takes all of its bucket that is waiting, up to ``max_batch``.
    """

    def __init__(
        self,
        encode: Callable[[list[T]], Any],
        *,
        max_batch: int,
        max_wait_s: float,
        max_queue: int,
        name: str,
        budget_s: float | None = None,
        min_batch: int = 1,
        bucket: Callable[[T], int] = _unit_weight,
    ) -> None:
        self._encode = encode
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.budget_s = budget_s
        # When even this many items overrun the budget (a machine busy with other work), batches
        # still take this many: the budget cannot be met either way, and a smaller batch only
        # lowers throughput while the queue grows.
        self.min_batch = min(min_batch, max_batch)
        self.name = name
        self._bucket = bucket
        self.cost = BatchCost()
        self._buckets: dict[int, deque[_Pending[T, R]]] = {}
        self._queued = 0
        self._queued_units = 0
        self._arrived = asyncio.Event()
        self._running_until = 0.0  # predicted end of the batch in the model now
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items = 0
        self.refused = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"batcher-{self.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for queue in self._buckets.values():
            while queue:
                pending = queue.popleft()
                if not pending.future.done():
                    pending.future.set_exception(Overloaded("The service is shutting down."))
        self._queued = self._queued_units = 0

    def cap(self, weight: int) -> int:
        """Items of ``weight`` one batch may hold."""
        if self.budget_s is None or not self.cost.known:
            return self.max_batch
        fits = math.floor(self.cost.max_units(self.budget_s) / max(weight, 1))
        return max(self.min_batch, min(self.max_batch, fits))

    def predicted_wait_s(self, weight: int = 1) -> float:
        """How long a new item of ``weight`` would take to be answered, from the cost model.

        The batch in the model now, then every queued item in batches at their bucket's cap,
        then this one. Zero while nothing has been measured yet.
        """
        if not self.cost.known:
            return 0.0
        now = time.perf_counter()
        wait = max(0.0, self._running_until - now)
        for bucket_weight, queue in self._buckets.items():
            count = len(queue) + (1 if bucket_weight == weight else 0)
            if count:
                wait += math.ceil(count / self._size(count)) * self.cost.fixed_s
                wait += self.cost.per_unit_s * count * bucket_weight
        if weight not in self._buckets or not self._buckets[weight]:
            wait += self.cost.seconds(weight)
        return wait

    async def submit(self, item: T, deadline_s: float) -> R:
        weight = max(1, int(self._bucket(item)))
        if self._queued >= self.max_queue:
            self.refused += 1
            raise Overloaded(
                "Search is at capacity right now; retry in a moment.", self.predicted_wait_s(weight)
            )
        predicted = self.predicted_wait_s(weight)
        if predicted > deadline_s:
            self.refused += 1
            raise Overloaded(
                f"Search is busy: the wait would be about {predicted:.1f}s, over the {deadline_s:g}s limit; "
                "retry in a moment.",
                predicted - deadline_s,
            )
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._buckets.setdefault(weight, deque()).append(_Pending(item, future, weight))
        self._queued += 1
        self._queued_units += weight
        self._arrived.set()
        try:
            return await asyncio.wait_for(asyncio.shield(future), deadline_s)
        except TimeoutError:
            future.cancel()
            raise Overloaded(f"The model did not answer within {deadline_s:g}s; retry in a moment.") from None

    def _oldest_bucket(self) -> int | None:
        oldest: tuple[float, int] | None = None
        for weight, queue in self._buckets.items():
            while queue and queue[0].future.done():  # callers that gave up
                self._take(queue)
            if queue and (oldest is None or queue[0].enqueued < oldest[0]):
                oldest = (queue[0].enqueued, weight)
        return None if oldest is None else oldest[1]

    def _take(self, queue: deque[_Pending[T, R]]) -> _Pending[T, R]:
        pending = queue.popleft()
        self._queued -= 1
        self._queued_units -= pending.weight
        return pending

    async def _collect(self) -> list[_Pending[T, R]]:
        while True:
            weight = self._oldest_bucket()
            if weight is not None:
                break
            self._arrived.clear()
            await self._arrived.wait()
        queue = self._buckets[weight]
        cap = self.cap(weight)
        closes = queue[0].enqueued + self.max_wait_s
        while len(queue) < cap:
            remaining = closes - time.perf_counter()
            if remaining <= 0:
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)
        batch = [self._take(queue) for _ in range(self._size(len(queue)))]
        return [p for p in batch if not p.future.done()]

    def _size(self, waiting: int) -> int:
        """Items the next batch takes: everything already waiting, up to ``max_batch``.

        The budget bounds how long a batch waits to fill, not what it takes: the queue is served
        in order, so splitting a backlog into budget-sized batches pays a forward pass's fixed
        cost once per batch and answers the backlog's last item later, while the first ones
        gain less than that: a batch costs far less than its items alone (bench/README.md,
        model_alone).
        """
        return min(self.max_batch, waiting)

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            if not batch:
                continue
            units = sum(p.weight for p in batch)
            started = time.perf_counter()
            started_ns = time.time_ns()
            self._running_until = started + (self.cost.seconds(units) if self.cost.known else 0.0)
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
            finally:
                self._running_until = 0.0
            self.cost.observe(units, time.perf_counter() - started)
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
