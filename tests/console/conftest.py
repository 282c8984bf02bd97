"""Helpers the console's tests share."""

from __future__ import annotations

import asyncpg

from webapp.suggest.repo import QueryLog


async def record_searches(database_url: str, searches: list[tuple[str, str]]) -> None:
    """Record searches (query, client address) the way the API does, and write them."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        log = QueryLog(pool)
        for query, client in searches:
            log.record(query, client)
        await log.flush()
    finally:
        await pool.close()
