"""The per-model HNSW index, ensured by every process that starts on a model key."""

from __future__ import annotations

import asyncio

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from webapp.adapters.db import migrate
from webapp.config import DatabaseSettings
from webapp.search.graphs import ensure_vector_index


async def test_processes_starting_together_all_find_the_index(database_url: str) -> None:
    """API and worker tasks start at once on a new key: none may fail creating the index."""
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        names = await asyncio.gather(
            *(ensure_vector_index(c, "new-model/weights", 8, m=16, ef_construction=64) for c in connections)
        )
        assert len(set(names)) == 1
        found = await connections[0].fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = $1 AND tablename = 'item_embeddings'", names[0]
        )
        assert found == 1
    finally:
        for connection in connections:
            await connection.close()


async def test_the_main_graph_is_built_with_the_configured_options(database_url: str) -> None:
    """A catalog grown to a million items needs a denser graph than pgvector's default to keep
    recall: the index carries the settings' build options (24 / 128 unless told otherwise)."""
    connection = await asyncpg.connect(database_url)
    try:
        configured = DatabaseSettings()
        default = await ensure_vector_index(
            connection,
            "dense-model/weights",
            8,
            m=configured.hnsw_m,
            ef_construction=configured.hnsw_ef_construction,
        )
        told = await ensure_vector_index(connection, "other-model/weights", 8, m=8, ef_construction=32)
        options = {
            name: await connection.fetchval("SELECT reloptions FROM pg_class WHERE relname = $1", name)
            for name in (default, told)
        }
        assert options == {default: ["m=24", "ef_construction=128"], told: ["m=8", "ef_construction=32"]}
    finally:
        await connection.close()


async def test_float32_embeddings_from_before_are_kept_in_half_precision(database_url: str) -> None:
    """A database from before migration 0007: its vectors survive the switch to halfvec and its
    float32 HNSW index makes way for the half-precision one the service builds."""
    connection = await asyncpg.connect(database_url)
    await register_vector(connection)
    try:
        # Back to the state 0006 left: float32 column, float32 index, 0007 not applied.
        await connection.execute("ALTER TABLE item_embeddings ALTER COLUMN embedding TYPE vector")
        await connection.execute("DELETE FROM schema_migrations WHERE version = 7")
        item = await connection.fetchval(
            """INSERT INTO items (title, price, image_key, image_sha256, status)
               VALUES ('Wool coat', 20, 'k', 'sha', 'ready') RETURNING id"""
        )
        vector = np.random.default_rng(3).standard_normal(64).astype(np.float32)
        await connection.execute(
            "INSERT INTO item_embeddings (item_id, model_key, embedding) VALUES ($1, 'old/key', $2)",
            item,
            vector,
        )
        legacy = "item_embeddings_hnsw_0123456789ab"
        await connection.execute(
            f"CREATE INDEX {legacy} ON item_embeddings USING hnsw ((embedding::vector(64)) vector_cosine_ops)"
        )
        assert await migrate(connection) == ["0007_halfvec_storage.sql"]
        kind = await connection.fetchval(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = 'item_embeddings'::regclass AND attname = 'embedding'"
        )
        assert kind == "halfvec"
        assert await connection.fetchval("SELECT to_regclass($1)", legacy) is None
        stored = await connection.fetchval("SELECT embedding FROM item_embeddings WHERE item_id = $1", item)
        kept = np.asarray(stored.to_numpy(), dtype=np.float32)
        assert float(kept @ vector / np.linalg.norm(kept) / np.linalg.norm(vector)) >= 0.9999
    finally:
        await connection.close()
