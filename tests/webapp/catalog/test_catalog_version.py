"""The catalog version that keys cached pages comes from LISTEN/NOTIFY, never stale for a shopper."""

from __future__ import annotations

import asyncio

import asyncpg
from quart import Quart

from tests.webapp.conftest import services_of
from tests.webapp.helpers import get, seed_catalog
from webapp.config import Settings


async def test_searches_do_not_read_the_version_per_request(app: Quart) -> None:
    await seed_catalog(app, [{"title": f"Wool coat {n}"} for n in range(12)])
    catalog = services_of(app).cache.catalog
    assert catalog.listening
    client = app.test_client()
    await get(client, q="wool coat", limit=5)  # may read once: the seeding write was this process's
    reads = catalog.reads
    for n in range(5):
        await get(client, q=f"wool coat {n}", limit=5)
        await get(client, q="wool coat", limit=5)  # cached page
    assert catalog.reads == reads


async def test_a_change_made_elsewhere_reaches_the_result_cache(app: Quart, settings: Settings) -> None:
    ids = await seed_catalog(app, [{"title": f"Linen shirt {n}"} for n in range(6)])
    catalog = services_of(app).cache.catalog
    client = app.test_client()
    before = await get(client, q="linen shirt", mode="semantic", limit=10)
    assert {h["id"] for h in before["items"]} == set(ids)
    # Another instance (or an operator) removes an item: no call into this process at all.
    assert settings.database.url is not None
    other = await asyncpg.connect(settings.database.url.get_secret_value())
    try:
        async with other.transaction():
            await other.execute("UPDATE items SET status = 'deleted' WHERE id = $1", ids[0])
            await other.execute("DELETE FROM item_embeddings WHERE item_id = $1", ids[0])
            await other.execute("UPDATE catalog_state SET version = version + 1 WHERE id = 1")
        expected = await other.fetchval("SELECT version FROM catalog_state WHERE id = 1")
    finally:
        await other.close()
    for _ in range(200):  # the notification arrives within milliseconds; 10 s at most
        if catalog.value == expected:
            break
        await asyncio.sleep(0.05)
    assert catalog.value == expected
    after = await get(client, q="linen shirt", mode="semantic", limit=10)
    assert {h["id"] for h in after["items"]} == set(ids[1:])


async def test_a_shopper_never_sees_an_item_this_process_just_deleted(
    app: Quart, auth: dict[str, str], settings: Settings
) -> None:
    ids = await seed_catalog(app, [{"title": f"Denim jacket {n}"} for n in range(4)])
    client = app.test_client()
    for victim in ids[:3]:
        assert {h["id"] for h in (await get(client, q="denim jacket", mode="semantic"))["items"]} >= {victim}
        response = await client.delete(f"/api/items/{victim}", headers=auth)
        assert response.status_code == 204
        # Straight away, before the notification can have been read: the page is not the cached one.
        page = await get(client, q="denim jacket", mode="semantic")
        assert victim not in {h["id"] for h in page["items"]}


async def test_without_the_listener_search_reads_the_version(app: Quart) -> None:
    services = services_of(app)
    catalog = services.cache.catalog
    await catalog.close()  # as when the listening connection is lost
    assert not catalog.listening
    ids = await seed_catalog(app, [{"title": f"Silk scarf {n}"} for n in range(3)])
    client = app.test_client()
    reads = catalog.reads
    page = await get(client, q="silk scarf", mode="semantic")
    assert {h["id"] for h in page["items"]} == set(ids) and catalog.reads == reads + 1
