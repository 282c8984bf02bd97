"""The search log: every search, written off the request path in batches.

A search puts one row on a bounded in-process queue and returns; a writer task empties the
queue with ``COPY`` (one round trip for hundreds of rows). When the queue is full (the
database is slow or away, or a flood outruns the writer) the row is dropped and counted in
``prethrift_search_log_dropped_total``: the log may lose searches, a search never waits for it.

What a row holds is listed in webapp/migrations/0014_search_analytics.sql: nothing that names
the shopper (no address, no user agent, no photo).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import secrets
from dataclasses import dataclass, field

import asyncpg
import orjson
import structlog

from webapp.config import AnalyticsSettings
from webapp.observability.telemetry import SEARCH_LOG_DROPPED, SEARCH_LOG_WRITTEN
from webapp.services import Services

log = structlog.get_logger(__name__)

# The columns a row fills, in SearchRecord's field order.
COLUMNS = (
    "at", "search_id", "session_id", "kind", "mode", "query", "terms", "given", "parsed",
    "page_offset", "results", "cached", "latency_ms",
)  # fmt: skip
MAX_TEXT = 300


def new_search_id() -> str:
    """A random id for one search, which its clicks name; it says nothing about the shopper."""
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class SearchRecord:
    """One search as the log keeps it."""

    search_id: str
    session_id: str | None
    kind: str  # text, browse or photo
    mode: str
    results: int
    cached: bool
    latency_ms: float
    query: str = ""
    terms: str = ""
    given: dict[str, str] = field(default_factory=dict)
    parsed: dict[str, str] = field(default_factory=dict)
    page_offset: int = 0
    at: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    def row(self) -> tuple[object, ...]:
        """The row in COLUMNS order (jsonb travels as text through asyncpg's default codec)."""
        return (
            self.at, self.search_id, self.session_id, self.kind, self.mode, self.query[:MAX_TEXT],
            self.terms[:MAX_TEXT], orjson.dumps(self.given).decode(), orjson.dumps(self.parsed).decode(),
            self.page_offset, self.results, self.cached, self.latency_ms,
        )  # fmt: skip


class SearchLog:
    """A bounded queue of searches and the task that writes them."""

    def __init__(self, pool: asyncpg.Pool, settings: AnalyticsSettings | None = None) -> None:
        self.pool = pool
        self.settings = settings or AnalyticsSettings()
        self._rows: collections.deque[tuple[object, ...]] = collections.deque()
        self._batch_ready = asyncio.Event()

    @property
    def pending(self) -> int:
        return len(self._rows)

    def record(self, record: SearchRecord) -> bool:
        """Queue ``record`` for writing; False (and counted) when the queue is full or logging is off."""
        if not self.settings.enabled:
            return False
        if len(self._rows) >= self.settings.queue_size:
            SEARCH_LOG_DROPPED.labels(reason="queue_full").inc()
            return False
        self._rows.append(record.row())
        if len(self._rows) >= self.settings.batch_size:
            self._batch_ready.set()
        return True

    async def flush(self) -> int:
        """Write everything queued, a batch per COPY; the number of rows written."""
        written = 0
        while self._rows:
            batch = [self._rows.popleft() for _ in range(min(self.settings.batch_size, len(self._rows)))]
            try:
                async with self.pool.acquire() as connection:
                    await connection.copy_records_to_table("search_events", records=batch, columns=COLUMNS)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                # Retrying would hold rows while more arrive; the queue's bound is what keeps the
                # process small, so a failed batch is dropped and counted.
                log.warning("could not write the search log; dropping a batch", rows=len(batch))
                SEARCH_LOG_DROPPED.labels(reason="write_failed").inc(len(batch))
                return written
            SEARCH_LOG_WRITTEN.inc(len(batch))
            written += len(batch)
        return written

    async def run(self, stop: asyncio.Event) -> None:
        """Write batches as they fill, and what is queued at least every flush_interval_s, until ``stop``."""
        try:
            while not stop.is_set():
                stopping = asyncio.ensure_future(stop.wait())
                filled = asyncio.ensure_future(self._batch_ready.wait())
                try:
                    await asyncio.wait(
                        (stopping, filled),
                        timeout=self.settings.flush_interval_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )
                finally:
                    for waiter in (stopping, filled):
                        waiter.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await waiter
                self._batch_ready.clear()
                await self.flush()
        finally:
            await self.flush()


def search_log_of(services: Services) -> SearchLog:
    """The process's search log, as start-up built it."""
    if isinstance(services.search_log, SearchLog):
        return services.search_log
    raise TypeError(f"services hold {type(services.search_log).__name__}, not a SearchLog")
