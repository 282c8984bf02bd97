"""The per-model HNSW index, ensured by every process that starts on a model key."""

from __future__ import annotations

import asyncio

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
