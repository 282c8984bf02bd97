"""Migration 0012 from the schema before it, with a catalog in it: every item stays searchable
before, during and after, with the vectors it had (nothing re-embedded)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import numpy as np
import pytest
from pgvector.asyncpg import register_vector

from tests.conftest import scratch_database
from webapp.adapters.db import load_migrations, migrate
from webapp.config import DatabaseSettings
from webapp.search.graphs import ensure_vector_index
from webapp.search.repo import VectorQueries

PHOTOS_VERSION = 12
KEY = "old/key"
DIM = 16


async def _migrate_before(connection: asyncpg.Connection, version: int) -> None:
    """The schema as it was before ``version``: every earlier migration, applied as migrate does."""
    await connection.execute(
        """CREATE TABLE schema_migrations (
               version integer PRIMARY KEY,
               name text NOT NULL,
               applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    for migration in load_migrations():
        if migration.version < version:
            async with connection.transaction():
                await connection.execute(migration.sql)
                await _record(connection, migration.version, migration.name)


async def _record(connection: asyncpg.Connection, version: int, name: str) -> None:
    await connection.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name)


@pytest.fixture(name="old_catalog")
async def _old_catalog(postgres_dsn: str) -> AsyncIterator[tuple[asyncpg.Connection, str]]:
    """A database migrated to just before the photos migration, and its URL."""
    async with scratch_database(postgres_dsn, "m_") as url:
        connection = await asyncpg.connect(url)
        try:
            await _migrate_before(connection, PHOTOS_VERSION)
            await register_vector(connection)
            yield connection, url
        finally:
            await connection.close()


async def test_every_item_stays_searchable_through_the_migration(
    old_catalog: tuple[asyncpg.Connection, str],
) -> None:
    connection, url = old_catalog
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((30, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = []
    for n, vector in enumerate(vectors):
        item_id = await connection.fetchval(
            """INSERT INTO items (title, price, category, image_key, image_sha256, status)
               VALUES ($1, 10, $2, $3, $4, 'ready') RETURNING id""",
            f"Item {n}",
            "coats" if n % 3 else "dresses",
            f"items/{n}.jpg",
            f"sha-{n}",
        )
        await connection.execute(
            "INSERT INTO item_embeddings (item_id, model_key, embedding) VALUES ($1, $2, $3::halfvec)",
            item_id,
            KEY,
            vector,
        )
        ids.append(item_id)
    pending = await connection.fetchval(
        """INSERT INTO items (title, price, image_key, image_sha256)
           VALUES ('Waiting', 5, 'items/w.jpg', 'sha-w') RETURNING id"""
    )
    await connection.execute("INSERT INTO embedding_jobs (item_id, model_key) VALUES ($1, $2)", pending, KEY)
    db = DatabaseSettings()
    await ensure_vector_index(connection, KEY, DIM, m=db.hnsw_m, ef_construction=db.hnsw_ef_construction)
    queries = VectorQueries(KEY, DIM, db)

    async def search(conn: asyncpg.Connection) -> list[tuple[int, float]]:
        hits = await queries.nearest(conn, vectors[4], limit=40)
        return [(h.id, round(h.score or 0.0, 3)) for h in hits]

    before = await search(connection)
    assert sorted(i for i, _ in before) == sorted(ids) and before[0] == (ids[4], 1.0)

    # During: the migration is one transaction; a search meanwhile waits for it or reads the old
    # catalog, and never finds it empty.
    migration = next(m for m in load_migrations() if m.version == PHOTOS_VERSION)
    reader = await asyncpg.connect(url)
    await register_vector(reader)
    try:
        transaction = connection.transaction()
        await transaction.start()
        await connection.execute(migration.sql)
        during = asyncio.create_task(search(reader))
        await asyncio.sleep(0.5)
        assert not during.done() or during.result() == before
        await _record(connection, migration.version, migration.name)
        await transaction.commit()
        assert await asyncio.wait_for(during, 10) == before
    finally:
        await reader.close()

    assert await search(connection) == before
    # Nothing of this migration left to apply; later ones apply on top and search stays whole.
    assert all(name > migration.name for name in await migrate(connection))
    assert await search(connection) == before
    photos = await connection.fetch(
        "SELECT item_id, photo, position, image_key, status FROM item_photos ORDER BY item_id"
    )
    assert [(r["photo"], r["position"]) for r in photos] == [(1, 1)] * (len(ids) + 1)
    assert {r["item_id"]: r["status"] for r in photos}[pending] == "pending"
    assert all(r["status"] == "ready" for r in photos if r["item_id"] != pending)
    # Nothing re-embedded: the vectors are the ones written, and only the waiting item is queued.
    assert await connection.fetchval("SELECT count(*) FROM item_embeddings WHERE photo = 1") == len(ids)
    assert await connection.fetchval("SELECT count(*) FROM embedding_jobs") == 1
    assert await connection.fetchval("SELECT photo FROM embedding_jobs") == 1
