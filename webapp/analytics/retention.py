"""The search log's upkeep, run by the worker: roll up the days so far, then delete what expired;
the catalog's facet tallies are folded in the same round.

Raw searches and clicks are kept ``raw_retention_days``, daily rollups ``rollup_retention_days``.
Deletes go in small batches, each its own short transaction, so the job never holds locks or
a long transaction against the searches being written meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt

import asyncpg
import structlog

from webapp.analytics.repo import roll_up, rolled_up_to
from webapp.config import AnalyticsSettings
from webapp.search.facets import compact_tallies

log = structlog.get_logger(__name__)

DELETE_BATCH = 5000
# One process does the upkeep at a time (several workers may run); others skip the round.
_LOCK_KEY = 0x5EA2C410


async def _delete_batches(connection: asyncpg.Connection, table: str, column: str, cutoff: object) -> int:
    deleted = 0
    while True:
        status: str = await connection.execute(
            f"""DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                    SELECT ctid FROM {table} WHERE {column} < $1 LIMIT {DELETE_BATCH}))""",
            cutoff,
        )
        count = int(status.split()[-1])
        deleted += count
        if count < DELETE_BATCH:
            return deleted


async def expire(
    connection: asyncpg.Connection, settings: AnalyticsSettings, now: dt.datetime
) -> dict[str, int]:
    """Delete raw rows older than the raw retention and rollups older than theirs; counts by table."""
    raw_cutoff = now - dt.timedelta(days=settings.raw_retention_days)
    rollup_cutoff = (now - dt.timedelta(days=settings.rollup_retention_days)).date()
    return {
        "search_events": await _delete_batches(connection, "search_events", "at", raw_cutoff),
        "search_clicks": await _delete_batches(connection, "search_clicks", "at", raw_cutoff),
        "search_daily": await _delete_batches(connection, "search_daily", "day", rollup_cutoff),
    }


async def catch_up(connection: asyncpg.Connection, settings: AnalyticsSettings, now: dt.datetime) -> int:
    """Roll up every day not yet final, and today so far; rows written.

    The newest rolled-up day and the one before are done again: clicks on a search come in after
    it, often across midnight. Days whose raw rows may already be gone are left as they are.
    """
    today = now.date()
    oldest_raw = (now - dt.timedelta(days=settings.raw_retention_days)).date() + dt.timedelta(days=1)
    upto = await rolled_up_to(connection)
    if upto is None:
        first: dt.datetime | None = await connection.fetchval("SELECT min(at) FROM search_events")
        if first is None:
            return 0
        since = first.astimezone(dt.UTC).date()
    else:
        since = upto - dt.timedelta(days=1)
    return await roll_up(connection, max(since, oldest_raw), today + dt.timedelta(days=1))


async def upkeep(pool: asyncpg.Pool, settings: AnalyticsSettings, now: dt.datetime | None = None) -> bool:
    """One round of rollups and expiry; False when another process holds the round."""
    now = now or dt.datetime.now(dt.UTC)
    async with pool.acquire() as connection:
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return False
        try:
            # Folded first and whatever the rollups do: unfolded tallies slow every facet count.
            tallies = await compact_tallies(connection)
            rolled = await catch_up(connection, settings, now)
            deleted = await expire(connection, settings, now)
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    log.info(
        "search log upkeep", rollup_rows=rolled, facet_tally_rows=tallies,
        **{f"deleted_{k}": v for k, v in deleted.items()},
    )  # fmt: skip
    return True


async def run_upkeep(pool: asyncpg.Pool, settings: AnalyticsSettings, stop: asyncio.Event) -> None:
    """Upkeep every ``upkeep_interval_s`` until ``stop``; a failed round is logged and tried again."""
    while not stop.is_set():
        try:
            await upkeep(pool, settings)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            log.warning("search log upkeep failed; trying again later", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.upkeep_interval_s)
