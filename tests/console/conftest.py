"""Helpers the console's tests share."""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator

import asyncpg
from pydantic import SecretStr

from webapp.adapters.cache import free_port
from webapp.analytics.log import SearchLog, SearchRecord
from webapp.analytics.repo import insert_click
from webapp.config import Settings
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


async def record_demand(
    database_url: str, searches: list[SearchRecord], clicks: list[tuple[str, int, int]]
) -> None:
    """Log searches through the API's search log, and clicks (search id, item id, position)."""
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    try:
        log = SearchLog(pool)
        for record in searches:
            log.record(record)
        await log.flush()
        async with pool.acquire() as connection:
            for search_id, item_id, position in clicks:
                await insert_click(connection, search_id, "tab-1", item_id, position)
    finally:
        await pool.close()


@contextlib.asynccontextmanager
async def running_console(settings: Settings, password: str) -> AsyncIterator[str]:
    """`prethrift console`'s own server over the test database, with a password; its base URL."""
    from webapp.cli.serving import serve_console

    port = free_port()
    console_settings = settings.model_copy(
        update={"console_port": port, "console_password": SecretStr(password)}
    )
    stop = asyncio.Event()
    server = asyncio.create_task(serve_console(console_settings, stop))
    base = f"http://127.0.0.1:{port}"
    try:
        # Generous: the console imports Dash and migrates before it listens, slow on a busy box.
        deadline = time.monotonic() + 90
        while True:
            try:
                await asyncio.to_thread(urllib.request.urlopen, base, timeout=2)
            except urllib.error.HTTPError as error:
                assert error.code == 401  # up, and asking for the password
                break
            except OSError:
                assert not server.done(), "the console stopped before it listened"
                assert time.monotonic() < deadline, f"the console did not listen on {base} within 90 s"
                await asyncio.sleep(0.1)
        yield base
    finally:
        stop.set()
        await asyncio.wait_for(server, 30)
