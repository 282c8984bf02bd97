"""Queries shoppers ran, counted in memory and written in batches, and completions from them.

A query becomes a completion for everyone only once ``min_clients`` different clients ran it
(and found something): each is recorded under a keyed hash of its address, never the address,
so one client repeating a query counts once. Queries nobody ran within the retention are no
longer suggested and are deleted; an operator's removal blocks a query for good; and nothing the
block list names (webapp/search/never_suggested.txt) is learned or suggested.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import time
from collections import Counter
from dataclasses import dataclass

import asyncpg
import structlog
from cachetools import TTLCache

from webapp.adapters.replica import ReadPools
from webapp.catalog.version import CatalogVersion
from webapp.config import SuggestSettings
from webapp.search.parse import normalise_query
from webapp.search.repo import Hit, VectorQueries
from webapp.services import Services
from webapp.suggest.moderation import BlockList

log = structlog.get_logger(__name__)

MAX_QUERY_CHARS = 100
# (query, client) pairs held between flushes; past this, searches are not recorded until the
# next flush, so a flood (or a database outage) cannot grow the process.
MAX_PENDING = 20_000
# Expired queries and client records are deleted at most this often.
PURGE_INTERVAL_S = 600.0


async def client_key_secret(connection: asyncpg.Connection) -> bytes:
    secret: bytes = await connection.fetchval("SELECT secret FROM suggestion_key")
    return secret


def client_key(secret: bytes, client: str) -> bytes:
    """A client's anonymous key: the same client gives the same key in every process, and the key
    does not give the address back (keyed, so guessing addresses needs the database's secret)."""
    return hmac.new(secret, client.encode(), hashlib.sha256).digest()[:16]


class QueryLog:
    """Counts executed searches off the request path; a flush is a few statements for many queries."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: SuggestSettings | None = None,
        flush_interval_s: float = 2.0,
        blocklist: BlockList | None = None,
    ) -> None:
        self.pool = pool
        self.settings = settings or SuggestSettings()
        self.flush_interval_s = flush_interval_s
        self.blocklist = blocklist or BlockList.load()
        self._pending: Counter[tuple[str, str]] = Counter()
        self._secret: bytes | None = None
        self._purged_at = -PURGE_INTERVAL_S

    def record(self, query: str, client: str) -> None:
        if not 0 < len(query) <= MAX_QUERY_CHARS or self.blocklist.blocks(query):
            return
        key = (query, client)
        if key in self._pending or len(self._pending) < MAX_PENDING:
            self._pending[key] += 1

    async def flush(self) -> int:
        """Write what was recorded; the number of distinct queries written."""
        if not self._pending:
            await self._purge_when_due()
            return 0
        batch, self._pending = self._pending, Counter()
        try:
            async with self.pool.acquire() as connection:
                written = await self._write(connection, batch)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("could not record search queries; keeping them for the next flush", queries=len(batch))
            for key, count in batch.items():
                if key in self._pending or len(self._pending) < MAX_PENDING:
                    self._pending[key] += count
            return 0
        await self._purge_when_due()
        return written

    async def _write(self, connection: asyncpg.Connection, batch: Counter[tuple[str, str]]) -> int:
        if self._secret is None:
            self._secret = await client_key_secret(connection)
        counts: Counter[str] = Counter()
        for (query, _client), count in batch.items():
            counts[query] += count
        pairs = sorted({(query, client_key(self._secret, client)) for query, client in batch})
        queries = list(counts)
        async with connection.transaction():
            await connection.execute(
                """INSERT INTO search_queries (query, count)
                   SELECT s.query, s.n FROM unnest($1::text[], $2::bigint[]) AS s(query, n)
                   WHERE NOT EXISTS (SELECT 1 FROM suggestion_blocks b WHERE b.query = s.query)
                   ORDER BY s.query
                   ON CONFLICT (query) DO UPDATE
                   SET count = search_queries.count + EXCLUDED.count, last_seen = now()""",
                queries,
                [counts[q] for q in queries],
            )
            await connection.execute(
                """INSERT INTO search_query_clients (query, client)
                   SELECT s.query, s.client FROM unnest($1::text[], $2::bytea[]) AS s(query, client)
                   WHERE EXISTS (SELECT 1 FROM search_queries q WHERE q.query = s.query)
                   ON CONFLICT (query, client) DO UPDATE SET last_seen = now()""",
                [p[0] for p in pairs],
                [p[1] for p in pairs],
            )
            await _recount(connection, queries)
        return len(queries)

    async def _purge_when_due(self) -> None:
        if time.monotonic() - self._purged_at < PURGE_INTERVAL_S:
            return
        self._purged_at = time.monotonic()
        try:
            async with self.pool.acquire() as connection:
                await purge_expired(connection, self.settings.retention_days)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("could not delete expired suggestions; trying again later")

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.flush_interval_s)
                await self.flush()
        finally:
            await self.flush()


async def _recount(connection: asyncpg.Connection, queries: list[str]) -> None:
    await connection.execute(
        """UPDATE search_queries q
           SET clients = (SELECT count(*) FROM search_query_clients c WHERE c.query = q.query)
           WHERE q.query = ANY($1::text[])""",
        queries,
    )


async def purge_expired(connection: asyncpg.Connection, retention_days: float) -> int:
    """Delete queries and client records older than the retention; the number of queries deleted."""
    cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=retention_days)
    async with connection.transaction():
        gone = await connection.fetch(
            "DELETE FROM search_query_clients WHERE last_seen < $1 RETURNING query", cutoff
        )
        deleted: str = await connection.execute("DELETE FROM search_queries WHERE last_seen < $1", cutoff)
        await _recount(connection, sorted({r["query"] for r in gone}))
    return int(deleted.split()[-1])


@dataclass(frozen=True)
class LearnedQuery:
    query: str
    clients: int
    count: int
    last_seen: dt.datetime


async def learned_queries(
    connection: asyncpg.Connection, prefix: str = "", limit: int = 50
) -> list[LearnedQuery]:
    """Recorded queries (suggested or still short of clients), most clients first."""
    rows = await connection.fetch(
        """SELECT query, clients, count, last_seen FROM search_queries
           WHERE query ~>=~ $1 AND ($2::text IS NULL OR query ~<~ $2)
           ORDER BY clients DESC, count DESC, query
           LIMIT $3""",
        prefix,
        _next_prefix(prefix) if prefix else None,
        limit,
    )
    return [LearnedQuery(r["query"], r["clients"], r["count"], r["last_seen"]) for r in rows]


def recordable_query(text: object) -> str | None:
    """``text`` normalised as queries are recorded; None when no recorded query could have that
    text (not a string, empty, too long, or holding NUL, which PostgreSQL text cannot)."""
    if not isinstance(text, str) or "\x00" in text:
        return None
    query = normalise_query(text)
    return query if 0 < len(query) <= MAX_QUERY_CHARS else None


async def remove_query(connection: asyncpg.Connection, query: str) -> bool:
    """Stop suggesting ``query`` and never learn it again; whether it had been recorded."""
    text = normalise_query(query)
    async with connection.transaction():
        await connection.execute(
            "INSERT INTO suggestion_blocks (query) VALUES ($1) ON CONFLICT (query) DO NOTHING", text
        )
        deleted: str = await connection.execute("DELETE FROM search_queries WHERE query = $1", text)
    return deleted != "DELETE 0"


async def unblock_query(connection: asyncpg.Connection, query: str) -> bool:
    """Let ``query`` be learned again (from new searches); whether it was blocked."""
    deleted: str = await connection.execute(
        "DELETE FROM suggestion_blocks WHERE query = $1", normalise_query(query)
    )
    return deleted != "DELETE 0"


async def blocked_queries(
    connection: asyncpg.Connection, limit: int | None = None
) -> list[tuple[str, dt.datetime]]:
    """Removed queries, alphabetically (the first ``limit``; None: all)."""
    rows = await connection.fetch(
        "SELECT query, blocked_at FROM suggestion_blocks ORDER BY query LIMIT $1", limit
    )
    return [(r["query"], r["blocked_at"]) for r in rows]


def _next_prefix(prefix: str) -> str | None:
    """The smallest string after every string that starts with ``prefix`` (None: there is none)."""
    # U+10FFFF has no successor: drop it and raise the character before it instead.
    stem = prefix.rstrip(chr(0x10FFFF))
    if not stem:
        return None
    return stem[:-1] + chr(ord(stem[-1]) + 1)


async def completions(
    connection: asyncpg.Connection,
    prefix: str,
    limit: int = 5,
    *,
    settings: SuggestSettings | None = None,
    blocklist: BlockList | None = None,
) -> list[str]:
    """Past queries that start with ``prefix``, run by enough clients within the retention, the
    most clients first (a range scan on the pattern index). How often, or how lately, one client
    repeated a query orders nothing."""
    if not prefix:
        return []
    settings = settings or SuggestSettings()
    # A NULL upper bound means no upper bound. A few more rows than asked for, in case the
    # block list (edited since they were learned) takes some out.
    rows = await connection.fetch(
        """SELECT query FROM search_queries q
           WHERE query ~>=~ $1 AND ($2::text IS NULL OR query ~<~ $2)
             AND clients >= $4 AND last_seen >= $5
             AND NOT EXISTS (SELECT 1 FROM suggestion_blocks b WHERE b.query = q.query)
           ORDER BY clients DESC, query
           LIMIT $3""",
        prefix,
        _next_prefix(prefix),
        limit * 3,
        settings.min_clients,
        dt.datetime.now(dt.UTC) - dt.timedelta(days=settings.retention_days),
    )
    found = [r["query"] for r in rows]
    if blocklist is not None:
        found = [q for q in found if not blocklist.blocks(q)]
    return found[:limit]


@dataclass(frozen=True)
class Suggestions:
    completions: list[str]
    items: list[Hit]


class Suggester:
    """Answers for a typed prefix, shared by every socket of the process for a few seconds.

    Shoppers type the same first letters; without this each keystroke of each socket costs two
    queries, and many sockets at once queue for pooled connections (bench/README.md,
    search_bench's suggestion round trip). Answers are held under the catalog version, which every
    task learns of a change by LISTEN/NOTIFY: an item sold or removed through any task leaves every
    task's previews as soon as it is committed.
    """

    PREVIEW_ITEMS = 4

    def __init__(
        self,
        pool: asyncpg.Pool,
        settings: SuggestSettings | None = None,
        *,
        ttl_s: float = 3.0,
        max_entries: int = 10_000,
        blocklist: BlockList | None = None,
        reads: ReadPools | None = None,
        catalog: CatalogVersion | None = None,
    ) -> None:
        self.pool = pool
        # Where suggestions are read: a current replica when one is configured.
        self.reads = reads
        self.settings = settings or SuggestSettings()
        self.blocklist = blocklist or BlockList.load()
        # None: answers are held for ttl_s whatever changes (forget() drops them in this process).
        self.catalog = catalog
        self._answers: TTLCache[tuple[int | None, str], Suggestions] = TTLCache(maxsize=max_entries, ttl=ttl_s)

    def forget(self) -> None:
        """Drop every held answer (an item left the catalog or changed)."""
        self._answers.clear()

    async def suggest(self, prefix: str, queries: VectorQueries | None) -> Suggestions:
        version = await self.catalog.current(self.pool) if self.catalog is not None else None
        cached = self._answers.get((version, prefix))
        if cached is not None:
            return cached

        async def read(connection: asyncpg.Connection) -> Suggestions:
            found = await completions(connection, prefix, settings=self.settings, blocklist=self.blocklist)
            items: list[Hit] = []
            if queries is not None:
                items = await queries.keyword(connection, prefix, limit=self.PREVIEW_ITEMS, prefix=True)
            return Suggestions(found, items)

        if self.reads is not None:
            answer = await self.reads.run(version, read)
        else:
            async with self.pool.acquire() as connection:
                answer = await read(connection)
        self._answers[(version, prefix)] = answer
        return answer


def suggester_of(services: Services) -> Suggester:
    """The process's suggester, as start-up built it."""
    if isinstance(services.suggester, Suggester):
        return services.suggester
    raise TypeError(f"services hold {type(services.suggester).__name__}, not a Suggester")
