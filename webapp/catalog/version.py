"""The catalog version: one number that changes whenever anything search shows changes.

Result pages are cached under it, so every write that changes what search shows bumps it
(``bump_catalog_version``, inside the write's transaction), and each process follows it by
LISTEN/NOTIFY (``CatalogVersion``) rather than a query per search.
"""

from __future__ import annotations

import contextlib
import time
import weakref
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger(__name__)


async def read_catalog_version(connection: asyncpg.Connection) -> int:
    version: int = await connection.fetchval("SELECT version FROM catalog_state WHERE id = 1")
    return version


async def bump_catalog_version(connection: asyncpg.Connection) -> None:
    """Mark the catalog changed; call inside the transaction that changes it."""
    note_catalog_write(connection.get_server_pid())
    await connection.execute("UPDATE catalog_state SET version = version + 1 WHERE id = 1")


# pg_notify channel of catalog changes; the trigger on catalog_state (migration 0006) sends
# "<version>:<backend pid>" whenever the version is bumped.
CATALOG_CHANNEL = "catalog_version"
# A write whose notification has not arrived after this long is taken as rolled back.
_PENDING_WRITE_S = 5.0

_live_versions: weakref.WeakSet[CatalogVersion] = weakref.WeakSet()


def note_catalog_write(backend_pid: int) -> None:
    """Called by code in this process that bumps the catalog version, before its commit.

    Until that write's notification arrives, this process reads the version from the database,
    so a shopper who deletes an item and searches again never sees it (read your own writes).
    """
    for version in list(_live_versions):
        count, _ = version.pending.get(backend_pid, (0, 0.0))
        version.pending[backend_pid] = (count + 1, time.monotonic())


class CatalogVersion:
    """The catalog version, kept current by LISTEN/NOTIFY instead of a query per search.

    Result pages are cached under the version, so it must never be older than a change this
    process has seen committed. While the listening connection is down, or a write made in this
    process has not been notified yet, ``current`` reads the database as before.
    """

    def __init__(self) -> None:
        self.value: int | None = None
        # Writes this process made and has not seen notified yet: backend pid -> (count, last).
        self.pending: dict[int, tuple[int, float]] = {}
        self.reads = 0  # database reads, for tests and the benchmark
        self._connection: asyncpg.Connection | None = None
        _live_versions.add(self)

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def start(self, dsn: str) -> None:
        """Listen on a dedicated connection (not the pool's: it is held for the process's life)."""
        try:
            connection = await asyncpg.connect(dsn)
            await connection.add_listener(CATALOG_CHANNEL, self._notified)
            connection.add_termination_listener(self._terminated)
            # LISTEN first, read second: no change can fall between the two.
            self.value = await read_catalog_version(connection)
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("catalog version listener failed; reading the version per search", error=repr(error))
            return
        self._connection = connection

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        version, _, writer = payload.partition(":")
        with contextlib.suppress(ValueError):
            self.value = max(self.value or 0, int(version))
            pid = int(writer)
            if pid in self.pending:
                count, at = self.pending[pid]
                if count > 1:
                    self.pending[pid] = (count - 1, at)
                else:
                    del self.pending[pid]

    def _terminated(self, _connection: Any) -> None:
        log.warning("catalog version listener lost; reading the version per search")
        self._connection = None
        self.value = None

    async def current(self, pool: asyncpg.Pool) -> int:
        if self.pending:
            now = time.monotonic()
            self.pending = {pid: w for pid, w in self.pending.items() if now - w[1] < _PENDING_WRITE_S}
        if self.value is not None and not self.pending and self.listening:
            return self.value
        self.reads += 1
        async with pool.acquire() as connection:
            return await read_catalog_version(connection)

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.remove_termination_listener(self._terminated)
            with contextlib.suppress(OSError, asyncpg.PostgresError):
                await connection.close(timeout=2)
        self.value = None
