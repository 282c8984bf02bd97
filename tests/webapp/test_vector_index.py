"""The per-model HNSW index, ensured by every process that starts on a model key."""

from __future__ import annotations

import asyncio
import hashlib

import asyncpg

from webapp.db import ensure_vector_index


async def test_processes_starting_together_all_find_the_index(database_url: str) -> None:
    """API and worker tasks start at once on a new key: none may fail creating the index."""
    connections = [await asyncpg.connect(database_url) for _ in range(4)]
    try:
        names = await asyncio.gather(*(ensure_vector_index(c, "new-model/weights", 8) for c in connections))
        assert len(set(names)) == 1
        found = await connections[0].fetchval(
            "SELECT count(*) FROM pg_indexes WHERE indexname = $1 AND tablename = 'item_embeddings'", names[0]
        )
        assert found == 1
    finally:
        for connection in connections:
            await connection.close()


async def test_a_float32_index_from_before_is_replaced_by_the_half_precision_one(database_url: str) -> None:
    key = "upgraded-model/weights"
    legacy = "item_embeddings_hnsw_" + hashlib.sha1(key.encode()).hexdigest()[:12]
    connection = await asyncpg.connect(database_url)
    try:
        for name in (legacy, legacy + "_cdeadbeef"):
            await connection.execute(
                f"CREATE INDEX {name} ON item_embeddings USING hnsw ((embedding::vector(8)) vector_cosine_ops) "
                f"WHERE model_key = '{key}'"
            )
        name = await ensure_vector_index(connection, key, 8)
        indexes = await connection.fetch(
            "SELECT indexname, indexdef FROM pg_indexes "
            "WHERE tablename = 'item_embeddings' AND indexdef LIKE $1",
            f"%{key}%",
        )
        assert [(r["indexname"], "halfvec_cosine_ops" in r["indexdef"]) for r in indexes] == [(name, True)]
    finally:
        await connection.close()
