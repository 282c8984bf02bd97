"""What the load balancer acts on: readiness holds a task back only for listings that have waited
too long for their embedding (not for every pending upload), and the load balancer's own check,
/startedz, stays up through a database outage once the task has been ready."""

from __future__ import annotations

import asyncio
import re
from typing import cast
from urllib.parse import urlsplit

import asyncpg
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import photo, upload, wait_ready
from webapp.app import create_app
from webapp.config import Settings
from webapp.embedding.embedder import ClipModel
from webapp.embedding.worker import EmbeddingWorker


async def _status(app: Quart, path: str) -> tuple[int, str]:
    response = await app.test_client().get(path)
    body = await response.get_json()
    return response.status_code, (body.get("error") or {}).get("message", "")


async def test_readiness_waits_for_old_listings_not_fresh_uploads(
    settings: Settings, tiny_clip: ClipModel, auth: dict[str, str]
) -> None:
    strict = settings.model_copy(update={"require_full_index": True, "ready_max_backlog_age_s": 300.0})

    # A worker that lags: an upload is still waiting for its embedding. A task starting now is
    # ready, for the load balancer and for operators alike.
    first = create_app(strict, clip=tiny_clip)
    async with first.test_app():
        await wait_ready(first)
        assert (await upload(cast(QuartClient, first.test_client()), photo(1), auth)).status_code == 202
        assert await _status(first, "/readyz") == (200, "")
        assert await _status(first, "/startedz") == (200, "")
        pool = first.extensions["prethrift"].pool
        # The same listing, listed an hour ago and still not embedded: the catalog is not there yet.
        await pool.execute("UPDATE items SET created_at = now() - interval '1 hour'")

    second = create_app(strict, clip=tiny_clip)
    async with second.test_app():
        await wait_ready(second)
        for path in ("/readyz", "/startedz"):
            status, message = await _status(second, path)
            assert status == 503, path
            # An hour, and the seconds this test took since (a loaded machine may take several).
            assert "covers 0.0% (0 of 1 items)" in message and re.search(r"waited 3,6\d\d s", message), message
            assert "PRETHRIFT_READY_MAX_BACKLOG_AGE_S=300" in message
        services = second.extensions["prethrift"]
        worker = EmbeddingWorker(services.pool, services.embedder, services.storage, strict.worker)
        assert await worker.drain() == 1
        assert await _status(second, "/readyz") == (200, "")

    # Development serves a partial index (and says so at start-up) rather than wait for it.
    assert settings.database.url is not None
    connection = await asyncpg.connect(settings.database.url.get_secret_value())
    try:
        await connection.execute("DELETE FROM item_embeddings")
    finally:
        await connection.close()
    relaxed = create_app(settings, clip=tiny_clip)
    async with relaxed.test_app():
        await wait_ready(relaxed)
        assert await _status(relaxed, "/readyz") == (200, "")


async def test_started_task_stays_in_the_load_balancer_through_a_database_outage(
    settings: Settings, tiny_clip: ClipModel, postgres_dsn: str
) -> None:
    strict = settings.model_copy(update={"require_full_index": True})
    assert settings.database.url is not None
    database = urlsplit(settings.database.url.get_secret_value()).path.lstrip("/")
    app = create_app(strict, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        assert await _status(app, "/startedz") == (200, "")
        admin = await asyncpg.connect(postgres_dsn)
        try:
            # A failover, as the task sees it: its connections drop and new ones are refused.
            await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false')
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database
            )
            status, message = await _status(app, "/readyz")
            assert status == 503 and "database unreachable" in message
            # The load balancer's check does not fail with it: no task is replaced, no model reloaded.
            assert await _status(app, "/startedz") == (200, "")
        finally:
            await admin.execute(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true')
            await admin.close()
        for _ in range(50):
            if (await _status(app, "/readyz"))[0] == 200:
                break
            await asyncio.sleep(0.1)
        assert await _status(app, "/readyz") == (200, "")
