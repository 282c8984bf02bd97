"""Caching: raw vectors in Redis, pages invalidated by catalog changes, Redis loss survived."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np
import pytest
import redis
from prometheus_client import REGISTRY
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import image_file, photo, services_of, upload, wait_ready
from webapp.adapters.cache import LocalRedisServer
from webapp.app import create_app
from webapp.config import RedisSettings, Settings
from webapp.embedding.embedder import ClipModel
from webapp.embedding.worker import EmbeddingWorker


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_query_embeddings_are_raw_float32_bytes_not_pickles(
    client: QuartClient, redis_url: str, tiny_clip: ClipModel
) -> None:
    assert (await client.get("/api/search", query_string={"q": "  Red   COAT "})).status_code == 200
    store = redis.Redis.from_url(redis_url)
    keys = store.keys("emb:*")
    assert len(keys) == 1
    raw = store.get(keys[0])
    assert raw is not None and len(raw) == tiny_clip.dim * 4
    assert not raw.startswith(b"\x80")  # a pickle would start with its protocol opcode
    expected = tiny_clip.encode_texts(["red coat"])[0]
    np.testing.assert_allclose(np.frombuffer(raw, dtype=np.float32), expected, atol=1e-6)


async def test_repeated_search_is_served_from_the_result_cache(client: QuartClient, app: Quart) -> None:
    batcher = services_of(app).embedder._text
    assert batcher is not None
    before_hits = counter("prethrift_cache_requests_total", cache="result", outcome="hit")
    first = await (await client.get("/api/search", query_string={"q": "linen shirt"})).get_json()
    encoded = batcher.items
    second = await (await client.get("/api/search", query_string={"q": "linen   shirt"})).get_json()
    # The same page, though each answer is a search of its own for the search log.
    assert first.pop("search_id") != second.pop("search_id")
    assert first == second
    assert batcher.items == encoded  # the model was not asked again
    assert counter("prethrift_cache_requests_total", cache="result", outcome="hit") == before_hits + 1


async def test_catalog_changes_invalidate_cached_pages(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    await upload(client, photo(1), auth)
    await worker.drain()
    before = await (await client.get("/api/search", query_string={"q": "dress"})).get_json()
    assert len(before["items"]) == 1

    new_id = (await (await upload(client, photo(2), auth)).get_json())["id"]
    await worker.drain()
    after = await (await client.get("/api/search", query_string={"q": "dress"})).get_json()
    assert new_id in [h["id"] for h in after["items"]]

    await client.delete(f"/api/items/{new_id}", headers=auth)
    final = await (await client.get("/api/search", query_string={"q": "dress"})).get_json()
    assert new_id not in [h["id"] for h in final["items"]]


@pytest.fixture(name="own_redis")
def _own_redis(redis_binary: str) -> LocalRedisServer:
    server = LocalRedisServer(redis_binary)
    server.start()
    return server


@pytest.fixture(name="fragile_app")
async def _fragile_app(
    settings: Settings, own_redis: LocalRedisServer, tiny_clip: ClipModel
) -> AsyncIterator[Quart]:
    fragile = settings.model_copy(
        update={"redis": RedisSettings(url=own_redis.url, timeout_s=0.2, retry_after_s=30)}
    )
    app = create_app(fragile, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        yield app
    own_redis.stop()


async def test_search_keeps_answering_when_redis_stops(
    fragile_app: Quart, own_redis: LocalRedisServer, settings: Settings, auth: dict[str, str]
) -> None:
    client = fragile_app.test_client()
    s = services_of(fragile_app)
    item = (await (await upload(client, photo(7), auth)).get_json())["id"]
    await EmbeddingWorker(s.pool, s.embedder, s.storage, settings.worker).drain()
    ok = await client.post("/api/search/image", files={"image": image_file(photo(7))})
    assert (await ok.get_json())["items"][0]["id"] == item

    def failures() -> float:
        # Whichever call meets the stopped Redis first (the shared rate limit, on the way in,
        # or the cache) counts the failure; the ones after it skip Redis.
        return sum(counter("prethrift_cache_errors_total", op=op) for op in ("get", "set", "limit", "bar"))

    errors_before = failures()
    own_redis.stop()

    for query in ("blue jeans", "wool coat", "blue jeans"):
        response = await client.get("/api/search", query_string={"q": query})
        assert response.status_code == 200
        assert [h["id"] for h in (await response.get_json())["items"]] == [item]
    photo_search = await client.post("/api/search/image", files={"image": image_file(photo(7))})
    assert (await photo_search.get_json())["items"][0]["id"] == item
    # The first failure is counted and logged; later calls skip Redis instead of waiting on it.
    assert failures() == errors_before + 1
    assert counter("prethrift_cache_errors_total", op="skipped") > 0


async def test_without_redis_an_in_process_cache_serves(settings: Settings, tiny_clip: ClipModel) -> None:
    local = settings.model_copy(update={"redis": RedisSettings(url=None)})
    app = create_app(local, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        batcher = services_of(app).embedder._text
        assert batcher is not None
        for _ in range(2):
            assert (await client.get("/api/search", query_string={"q": "scarf"})).status_code == 200
        assert batcher.items == 1
