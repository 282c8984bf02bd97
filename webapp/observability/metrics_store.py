"""The metrics store: per-minute request latency, cache and ingest figures in PostgreSQL.

Every replica (API and worker processes) counts into an in-memory :class:`MetricsRecorder`
(a dict update per event, no I/O) and a :class:`MetricsWriter` task adds those counts to
``metrics_*`` rows in one transaction every few seconds, off the request path. Latency is a
histogram over the fixed :data:`LATENCY_BOUNDS_MS`, so rows from several replicas or minutes
merge by adding counts; percentiles are read from the merged histogram, never averaged.
The tables survive restarts; rows older than the retention period are deleted.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Self

import asyncpg
import structlog
from opentelemetry.instrumentation.utils import suppress_instrumentation

from webapp.config import MetricsSettings

log = structlog.get_logger(__name__)

# Upper bounds (inclusive) of the latency buckets, in milliseconds; a last bucket counts slower
# requests. Steps of about 25% keep a percentile within ~12% of the truth. Stored rows depend
# on these bounds: change them only with a migration that empties metrics_requests.
LATENCY_BOUNDS_MS: tuple[float, ...] = (
    0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 120, 150,
    200, 250, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000, 2500, 3000, 4000, 5000, 6000,
    8000, 10000, 15000, 20000, 30000, 60000,
)  # fmt: skip
BUCKETS = len(LATENCY_BOUNDS_MS) + 1


def bucket_of(ms: float) -> int:
    """Index of the bucket that counts a request of ``ms`` milliseconds."""
    return bisect.bisect_left(LATENCY_BOUNDS_MS, ms)


def percentile(buckets: Sequence[int], q: float, max_ms: float | None = None) -> float | None:
    """The ``q`` quantile (0..1) of a latency histogram, interpolating inside its bucket.

    ``max_ms`` (the slowest request seen) bounds the open last bucket; without it a quantile
    that falls there reads as the last bound. None for an empty histogram.
    """
    if len(buckets) != BUCKETS:
        raise ValueError(f"a latency histogram has {BUCKETS} buckets, not {len(buckets)}")
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            low = LATENCY_BOUNDS_MS[index - 1] if index > 0 else 0.0
            if index < len(LATENCY_BOUNDS_MS):
                high = LATENCY_BOUNDS_MS[index]
            else:
                high = max(max_ms or low, low)
            if max_ms is not None:
                high = min(high, max(max_ms, low))
            return low + (high - low) * max(0.0, rank - seen) / count
        seen += count
    return LATENCY_BOUNDS_MS[-1]


def merge_buckets(histograms: Sequence[Sequence[int]]) -> list[int]:
    """Add histograms bucket by bucket (the only correct way to combine them)."""
    merged = [0] * BUCKETS
    for histogram in histograms:
        for index, count in enumerate(histogram):
            merged[index] += count
    return merged


@dataclass
class RequestCounts:
    requests: int = 0
    errors: int = 0
    rejected: int = 0
    total_ms: float = 0.0
    max_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * BUCKETS)

    def add(self, other: RequestCounts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.rejected += other.rejected
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)
        for index, count in enumerate(other.buckets):
            self.buckets[index] += count


@dataclass
class IngestCounts:
    embedded: int = 0
    retried: int = 0
    failed: int = 0
    queue_depth: int | None = None

    def add(self, other: IngestCounts) -> None:
        self.embedded += other.embedded
        self.retried += other.retried
        self.failed += other.failed
        if other.queue_depth is not None:
            self.queue_depth = max(self.queue_depth or 0, other.queue_depth)


@dataclass
class MetricsBatch:
    """What a recorder counted since the last flush, keyed by the minute (epoch seconds)."""

    requests: dict[tuple[int, str], RequestCounts] = field(default_factory=dict)
    cache: dict[tuple[int, str], list[int]] = field(default_factory=dict)  # [hits, misses]
    ingest: dict[int, IngestCounts] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.requests or self.cache or self.ingest)

    def add(self, other: MetricsBatch) -> None:
        for key, counts in other.requests.items():
            self.requests.setdefault(key, RequestCounts()).add(counts)
        for key, (hits, misses) in other.cache.items():
            mine = self.cache.setdefault(key, [0, 0])
            mine[0] += hits
            mine[1] += misses
        for minute, ingest in other.ingest.items():
            self.ingest.setdefault(minute, IngestCounts()).add(ingest)

    def size(self) -> int:
        return len(self.requests) + len(self.cache) + len(self.ingest)


class MetricsRecorder:
    """In-memory counts for the current minutes: cheap enough to call on every request.

    All methods run on the event loop thread; nothing here does I/O.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._batch = MetricsBatch()

    def _minute(self) -> int:
        return int(self._clock() // 60) * 60

    def request(self, route: str, status: int, seconds: float) -> None:
        ms = seconds * 1000.0
        key = (self._minute(), route)
        counts = self._batch.requests.get(key)
        if counts is None:
            counts = self._batch.requests[key] = RequestCounts()
        counts.requests += 1
        counts.total_ms += ms
        if ms > counts.max_ms:
            counts.max_ms = ms
        counts.buckets[bucket_of(ms)] += 1
        if status >= 500:
            counts.errors += 1
        elif status >= 400:
            counts.rejected += 1

    def cache_lookup(self, cache: str, hit: bool) -> None:
        counts = self._batch.cache.setdefault((self._minute(), cache), [0, 0])
        counts[0 if hit else 1] += 1

    def ingest(self, *, embedded: int = 0, retried: int = 0, failed: int = 0) -> None:
        counts = self._batch.ingest.setdefault(self._minute(), IngestCounts())
        counts.embedded += embedded
        counts.retried += retried
        counts.failed += failed

    def queue_depth(self, depth: int) -> None:
        counts = self._batch.ingest.setdefault(self._minute(), IngestCounts())
        counts.queue_depth = max(counts.queue_depth or 0, depth)

    def take(self) -> MetricsBatch:
        """Hand over everything counted so far and start afresh."""
        batch, self._batch = self._batch, MetricsBatch()
        return batch

    def put_back(self, batch: MetricsBatch, limit: int = 50_000) -> None:
        """Return a batch that could not be written, so the next flush retries it."""
        if batch.size() + self._batch.size() > limit:
            log.warning("metrics store unreachable for long; dropping old counts", rows=batch.size())
            return
        batch.add(self._batch)
        self._batch = batch


def _at(minute: int) -> datetime:
    return datetime.fromtimestamp(minute, tz=UTC)


async def write_batch(connection: asyncpg.Connection, batch: MetricsBatch, replica: str) -> None:
    """Add a batch's counts to the stored rows (one transaction; safe to call from any replica)."""
    async with connection.transaction():
        if batch.requests:
            await connection.executemany(
                """INSERT INTO metrics_requests AS m
                       (minute, route, replica, requests, errors, rejected, total_ms, max_ms, buckets)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                   ON CONFLICT (minute, route, replica) DO UPDATE SET
                       requests = m.requests + EXCLUDED.requests,
                       errors = m.errors + EXCLUDED.errors,
                       rejected = m.rejected + EXCLUDED.rejected,
                       total_ms = m.total_ms + EXCLUDED.total_ms,
                       max_ms = greatest(m.max_ms, EXCLUDED.max_ms),
                       buckets = metrics_add_buckets(m.buckets, EXCLUDED.buckets)""",
                [
                    (_at(m), route, replica, c.requests, c.errors, c.rejected, c.total_ms, c.max_ms, c.buckets)
                    for (m, route), c in batch.requests.items()
                ],
            )
        if batch.cache:
            await connection.executemany(
                """INSERT INTO metrics_cache AS m (minute, cache, replica, hits, misses)
                   VALUES ($1, $2, $3, $4, $5)
                   ON CONFLICT (minute, cache, replica) DO UPDATE SET
                       hits = m.hits + EXCLUDED.hits, misses = m.misses + EXCLUDED.misses""",
                [(_at(m), cache, replica, hits, misses) for (m, cache), (hits, misses) in batch.cache.items()],
            )
        if batch.ingest:
            await connection.executemany(
                """INSERT INTO metrics_ingest AS m (minute, replica, embedded, retried, failed, queue_depth)
                   VALUES ($1, $2, $3, $4, $5, $6)
                   ON CONFLICT (minute, replica) DO UPDATE SET
                       embedded = m.embedded + EXCLUDED.embedded,
                       retried = m.retried + EXCLUDED.retried,
                       failed = m.failed + EXCLUDED.failed,
                       queue_depth = greatest(m.queue_depth, EXCLUDED.queue_depth)""",
                [
                    (_at(minute), replica, c.embedded, c.retried, c.failed, c.queue_depth)
                    for minute, c in batch.ingest.items()
                ],
            )


async def prune(connection: asyncpg.Connection, retention: timedelta) -> int:
    """Delete rows older than ``retention``; returns how many went."""
    cutoff = datetime.now(UTC) - retention
    deleted = 0
    for table in ("metrics_requests", "metrics_cache", "metrics_ingest"):
        status = await connection.execute(f"DELETE FROM {table} WHERE minute < $1", cutoff)
        deleted += int(status.split()[-1])
    return deleted


class MetricsWriter:
    """Flushes a recorder to PostgreSQL every ``flush_interval_s`` and once more on exit."""

    PRUNE_EVERY_S = 3600.0

    def __init__(self, pool: asyncpg.Pool, recorder: MetricsRecorder, settings: MetricsSettings) -> None:
        self.pool = pool
        self.recorder = recorder
        self.settings = settings
        self._task: asyncio.Task[None] | None = None
        self._pruned_at = -math.inf
        self._lock = asyncio.Lock()

    async def flush(self) -> int:
        """Write what was counted so far; returns the number of rows touched (0 on failure)."""
        async with self._lock:
            batch = self.recorder.take()
            if not batch:
                return 0
            try:
                # The store's own queries are not part of anyone's trace.
                with suppress_instrumentation():
                    async with self.pool.acquire() as connection:
                        await write_batch(connection, batch, self.settings.replica)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                log.warning("metrics flush failed; will retry", error=repr(error))
                self.recorder.put_back(batch)
                return 0
            return batch.size()

    async def prune(self) -> int:
        with suppress_instrumentation():
            async with self.pool.acquire() as connection:
                deleted = await prune(connection, timedelta(days=self.settings.retention_days))
        self._pruned_at = time.monotonic()
        return deleted

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            await self.flush()
            if time.monotonic() - self._pruned_at >= self.PRUNE_EVERY_S:
                try:
                    await self.prune()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
                    log.warning("metrics prune failed", error=repr(error))

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="metrics-writer")
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await self.flush()
