"""A task of an old release that restarts after its model key was retired leaves the key retired."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.webapp.conftest import services_of
from webapp.adapters.db import vector_index_name
from webapp.app import create_app
from webapp.config import Settings
from webapp.embedding import model_keys
from webapp.embedding.embedder import ClipModel


async def test_a_task_restarted_on_a_retired_key_stays_out_of_service(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    assert settings.database.url is not None
    dsn = settings.database.url.get_secret_value()
    connection = await asyncpg.connect(dsn)
    try:
        await model_keys.register(connection, tiny_clip.model_key)
        await model_keys.retire(connection, tiny_clip.model_key)
    finally:
        await connection.close()

    app = create_app(settings, clip=tiny_clip)
    async with app.test_app():
        readiness = services_of(app).readiness
        for _ in range(500):
            if readiness.model_retired:
                break
            await asyncio.sleep(0.02)
        ready = await app.test_client().get("/readyz")
        assert ready.status_code == 503
        message = (await ready.get_json())["error"]["message"]
        assert "was retired" in message and "prethrift reembed" in message, message
        # Search is not served from a key whose embeddings are gone.
        assert (await app.test_client().get("/api/search", query_string={"q": "coat"})).status_code == 503

    connection = await asyncpg.connect(dsn)
    try:
        retired = await connection.fetchval(
            "SELECT retired_at IS NOT NULL FROM embedding_models WHERE model_key = $1", tiny_clip.model_key
        )
        listed = await model_keys.list_models(connection)
        index_back = await connection.fetchval(
            "SELECT to_regclass($1) IS NOT NULL", vector_index_name(tiny_clip.model_key)
        )
    finally:
        await connection.close()
    assert retired is True
    assert index_back is False  # its vector index, dropped by retire, was not built again
    assert [m.state for m in listed if m.model_key == tiny_clip.model_key] == ["retired"]
