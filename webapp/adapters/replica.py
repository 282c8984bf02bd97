"""Reads that may go to a streaming read replica, and only when it cannot contradict the primary.

A hot standby replays the primary's write-ahead log some time after each commit
(postgresql.org/docs/current/hot-standby.html), so a read there can miss a change the request
already knows about. Every read names the catalog version it serves (the version its cache key
and its page are built on); the replica serves it only once it has replayed that version. A
replica that is unreachable, or behind the primary for longer than the lag bound, gets no reads
until a check finds it current again. A read that fails on the replica because the replica went
away is run again on the primary: reads are idempotent, so the caller never sees the failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import asyncpg
import structlog
from prometheus_client import Counter

log = structlog.get_logger(__name__)

T = TypeVar("T")

READS = Counter(
    "prethrift_db_reads_total",
    "Read-only database work by where it ran: replica, or primary (no replica, or not current)",
    ["target"],
)

# What a replica that stops, restarts or drops its connections raises; anything else (a bad
# query, a statement timeout) is the query's own fault and would fail on the primary too.
REPLICA_LOST = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
)


class ReadPools:
    """The primary's pool, and a replica's when one is configured, chosen per read.

    ``catalog_version`` reads the version the primary is at (the process's listened value);
    a background check every ``check_s`` reads the version the replica has replayed.
    """

    def __init__(
        self,
        primary: asyncpg.Pool,
        replica: asyncpg.Pool | None = None,
        *,
        primary_version: Callable[[], int | None] = lambda: None,
        check_s: float = 1.0,
        max_lag_s: float = 10.0,
    ) -> None:
        self.primary = primary
        self.replica = replica
        self._primary_version = primary_version
        self.check_s = check_s
        self.max_lag_s = max_lag_s
        # The catalog version the replica had replayed at its last check; None while unknown or down.
        self.replica_version: int | None = None
        # Since when the replica has been behind the primary's version (monotonic), or None.
        self._behind_since: float | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def replica_usable(self) -> bool:
        if self.replica is None or self.replica_version is None:
            return False
        return self._behind_since is None or time.monotonic() - self._behind_since <= self.max_lag_s

    def _serves(self, version: int | None) -> bool:
        if not self.replica_usable or self.replica_version is None:
            return False
        if version is None:
            return True
        return self.replica_version >= version

    async def start(self) -> None:
        if self.replica is None:
            return
        await self.check()
        self._task = asyncio.create_task(self._watch(), name="replica-check")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.replica is not None:
            await self.replica.close()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_s)
            await self.check()

    async def check(self) -> None:
        """Read the replica's replayed catalog version; mark it down on any failure."""
        assert self.replica is not None
        try:
            async with asyncio.timeout(max(self.check_s, 1.0)):
                async with self.replica.acquire() as connection:
                    version = int(await connection.fetchval("SELECT version FROM catalog_state WHERE id = 1"))
        except (*REPLICA_LOST, asyncpg.PostgresError) as error:
            if self.replica_version is not None:
                log.warning("read replica unavailable; reads go to the primary", error=repr(error))
            self.replica_version = None
            return
        if self.replica_version is None:
            log.info("read replica serving reads", version=version)
        self.replica_version = version
        primary = self._primary_version()
        if primary is not None and version < primary:
            self._behind_since = self._behind_since or time.monotonic()
        else:
            self._behind_since = None

    def _lost(self, error: BaseException) -> None:
        if self.replica_version is not None:
            log.warning("read replica lost mid-read; reads go to the primary", error=repr(error))
        self.replica_version = None

    @contextlib.asynccontextmanager
    async def acquire(self, version: int | None) -> AsyncIterator[asyncpg.Connection]:
        """A connection to read ``version`` from: the replica's when it has replayed it.

        Only a failure to connect falls back here; a read whose statements may fail midway
        uses ``run``, which repeats it on the primary.
        """
        if self.replica is not None and self._serves(version):
            try:
                holder = self.replica.acquire()
                connection = await holder.__aenter__()
            except REPLICA_LOST as error:
                self._lost(error)
            else:
                READS.labels("replica").inc()
                try:
                    yield connection
                except REPLICA_LOST as error:
                    self._lost(error)
                    raise
                finally:
                    with contextlib.suppress(*REPLICA_LOST):
                        await holder.__aexit__(None, None, None)
                return
        READS.labels("primary").inc()
        async with self.primary.acquire() as connection:
            yield connection

    async def run(self, version: int | None, read: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``read`` on the replica when it serves ``version``, else (or if the replica goes away
        during it) on the primary."""
        if self.replica is not None and self._serves(version):
            try:
                async with self.replica.acquire() as connection:
                    found = await read(connection)
            except REPLICA_LOST as error:
                self._lost(error)
            else:
                READS.labels("replica").inc()
                return found
        READS.labels("primary").inc()
        async with self.primary.acquire() as connection:
            return await read(connection)


def shuffled_hosts(dsn: str) -> str:
    """``dsn`` with the hosts of a multi-host DSN (``postgresql://u:p@h1:5432,h2:5432/db``) in a
    random order: asyncpg connects to the first that answers, so each process favours its own."""
    scheme, sep, rest = dsn.partition("://")
    credentials, at, after = rest.rpartition("@")
    hosts, slash, tail = after.partition("/")
    if not sep or "," not in hosts:
        return dsn
    order = hosts.split(",")
    random.shuffle(order)
    return f"{scheme}{sep}{credentials}{at}{','.join(order)}{slash}{tail}"
