"""Several photos per item: every photo embedded and searchable, one item per result."""

from __future__ import annotations

import asyncpg
import pytest
from quart import Quart
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from tests.webapp.conftest import image_file, photo, services_of, upload
from tests.webapp.items.conftest import (
    image_parts,
    key_of,
    object_exists,
    photo_vector,
    queued_jobs,
    upload_photos,
)
from webapp.config import Settings
from webapp.embedding.worker import EmbeddingWorker
from webapp.search.repo import loaded_queries


async def test_an_item_is_found_by_any_of_its_photos_and_listed_once(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    response = await upload_photos(client, [photo(1), photo(2), photo(3)], auth, title="Three sides")
    assert response.status_code == 202
    item_id = (await response.get_json())["id"]
    others = [(await (await upload(client, photo(seed), auth)).get_json())["id"] for seed in range(4, 10)]
    assert await worker.drain() == 9  # every photo, not every item

    item = await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json()
    assert [(p["position"], p["status"]) for p in item["photos"]] == [(1, "ready"), (2, "ready"), (3, "ready")]
    assert item["image_url"].split("?")[0] == item["photos"][0]["image_url"].split("?")[0]

    # The text path, driven by a query vector we choose (random weights make text meaningless):
    # the query's embedding is the second photo's vector, as a cached text embedding.
    services = services_of(app)
    await services.cache.set_embedding(services.model_key, "back view", await photo_vector(app, item_id, 2))
    page = await (
        await client.get("/api/search", query_string={"q": "back view", "mode": "semantic", "limit": "20"})
    ).get_json()
    ids = [hit["id"] for hit in page["items"]]
    assert ids[0] == item_id and page["items"][0]["score"] > 0.999
    assert sorted(ids) == sorted([item_id, *others])  # each item once
    # Results show the cover.
    assert page["items"][0]["image_url"].split("?")[0] == item["photos"][0]["image_url"].split("?")[0]

    found = await client.post("/api/search/image", files={"image": image_file(photo(3))})
    hits = (await found.get_json())["items"]
    assert hits[0]["id"] == item_id and hits[0]["score"] > 0.999
    assert len({h["id"] for h in hits}) == len(hits)

    similar = await (await client.get(f"/api/items/{item_id}/similar")).get_json()
    assert item_id not in [h["id"] for h in similar["items"]]
    assert sorted(h["id"] for h in similar["items"]) == sorted(others)


async def test_pages_and_facet_counts_count_items_not_photos(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = []
    for n in range(5):
        seeds = [10 + 3 * n, 11 + 3 * n, 12 + 3 * n]
        category = "outerwear" if n % 2 else "dresses"
        response = await upload_photos(client, [photo(s) for s in seeds], auth, category=category)
        ids.append((await response.get_json())["id"])
    ids.append((await (await upload(client, photo(40), auth, category="dresses")).get_json())["id"])
    await worker.drain()
    services = services_of(app)
    await services.cache.set_embedding(services.model_key, "coat", await photo_vector(app, ids[2], 3))

    query = {"q": "coat", "mode": "semantic"}
    whole = await (await client.get("/api/search", query_string={**query, "limit": "20"})).get_json()
    assert sorted(h["id"] for h in whole["items"]) == sorted(ids)
    paged: list[int] = []
    for offset in range(0, 8, 2):
        page = await (
            await client.get("/api/search", query_string={**query, "limit": "2", "offset": str(offset)})
        ).get_json()
        paged += [h["id"] for h in page["items"]]
    # Exact pages: the same order cut in pieces, no item twice, none skipped.
    assert paged == [h["id"] for h in whole["items"]]

    # How many photos a page ranks follows the catalog's photos per item (16 photos, 6 items);
    # a ratio far too low only makes the fold rank more: pages stay exact.
    queries = loaded_queries(services)
    assert queries is not None
    async with services.pool.acquire() as connection:
        await queries.graphs.load(connection)
    assert queries.graphs.photos_per_item == pytest.approx(1.1 * 16 / 6)
    queries.graphs.photos_per_item = 1.0
    await services.cache.set_embedding(services.model_key, "coat again", await photo_vector(app, ids[2], 3))
    again: list[int] = []
    for offset in range(0, 6, 3):
        page = await (
            await client.get(
                "/api/search",
                query_string={"q": "coat again", "mode": "semantic", "limit": "3", "offset": str(offset)},
            )
        ).get_json()
        again += [h["id"] for h in page["items"]]
    assert again == [h["id"] for h in whole["items"]]

    facets = await (
        await client.get("/api/search", query_string={**query, "facets": "category", "limit": "20"})
    ).get_json()
    counts = {f["value"]: f["count"] for f in facets["facets"]["category"]}
    assert counts == {"dresses": 4, "outerwear": 2}


async def test_patch_reorders_removes_and_adds_photos(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    item_id = (await (await upload_photos(client, [photo(50), photo(51), photo(52)], auth)).get_json())["id"]
    await worker.drain()
    before = await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json()
    keys = [key_of(p) for p in before["photos"]]
    assert all([await object_exists(app, key) for key in keys])

    # Photo 3 becomes the cover, photo 2 goes: nothing is queued, nothing stored again.
    response = await client.patch(f"/api/items/{item_id}", json={"photos": [3, 1]}, headers=auth)
    assert response.status_code == 200, await response.get_data()
    after = await response.get_json()
    assert [(p["id"], p["position"]) for p in after["photos"]] == [(3, 1), (1, 2)]
    assert after["photos"][0]["sha256"] == before["photos"][2]["sha256"]
    assert await queued_jobs(app) == 0
    found = await client.post("/api/search/image", files={"image": image_file(photo(51))})
    assert all(h["score"] < 0.999 for h in (await found.get_json())["items"])  # its vectors went too
    async with services_of(app).pool.acquire() as connection:
        assert await _embedded(connection, item_id) == 2
        cover = await connection.fetchval("SELECT image_sha256 FROM items WHERE id = $1", item_id)
    assert cover == before["photos"][2]["sha256"]

    # A new photo placed second; only it is queued.
    response = await client.patch(
        f"/api/items/{item_id}",
        form={"photos": '[3, "new", 1]'},
        files=image_parts([photo(53)]),
        headers=Headers(auth),
    )
    assert response.status_code == 200, await response.get_data()
    photos = (await response.get_json())["photos"]
    assert [(p["id"], p["status"]) for p in photos] == [(3, "ready"), (4, "pending"), (1, "ready")]
    assert await queued_jobs(app) == 1
    assert await worker.drain() == 1

    bad = await client.patch(f"/api/items/{item_id}", json={"photos": [9]}, headers=auth)
    assert bad.status_code == 422 and (await bad.get_json())["error"]["code"] == "unknown_photo"
    none = await client.patch(f"/api/items/{item_id}", json={"photos": []}, headers=auth)
    assert none.status_code == 422

    assert (await client.delete(f"/api/items/{item_id}", headers=auth)).status_code == 204
    for key in keys:
        assert not await object_exists(app, key)
    async with services_of(app).pool.acquire() as connection:
        assert await _embedded(connection, item_id) == 0
        assert await connection.fetchval("SELECT count(*) FROM item_photos WHERE item_id = $1", item_id) == 0


async def _embedded(connection: asyncpg.Connection, item_id: int) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM item_embeddings WHERE item_id = $1", item_id)
    return count


async def test_duplicates_and_photo_counts_are_refused_per_photo(
    app: Quart, client: QuartClient, auth: dict[str, str]
) -> None:
    first = (await (await upload_photos(client, [photo(60), photo(61)], auth)).get_json())["id"]
    again = await upload_photos(client, [photo(62), photo(61)], auth)
    assert again.status_code == 409
    error = (await again.get_json())["error"]
    assert error["code"] == "duplicate_image" and str(first) in error["message"]
    twice = await upload_photos(client, [photo(63), photo(63)], auth)
    assert twice.status_code == 422

    most = services_of(app).settings.limits.max_photos_per_item
    many = await upload_photos(client, [photo(70)] * (most + 1), auth)
    assert many.status_code == 422 and (await many.get_json())["error"]["code"] == "photo_count"
    async with services_of(app).pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM items WHERE status <> 'deleted'") == 1
        assert await connection.fetchval("SELECT count(*) FROM item_photos") == 2


async def test_an_item_is_searchable_once_its_cover_is_and_shows_each_photos_status(
    app: Quart, client: QuartClient, settings: Settings, auth: dict[str, str]
) -> None:
    s = services_of(app)
    once = EmbeddingWorker(
        s.pool, s.embedder, s.storage, settings.worker.model_copy(update={"max_attempts": 1})
    )
    good = (await (await upload_photos(client, [photo(80), photo(81)], auth)).get_json())["id"]
    bad_cover = (await (await upload_photos(client, [photo(82), photo(83)], auth)).get_json())["id"]
    async with s.pool.acquire() as connection:
        # A second photo, and another item's cover, whose objects are gone: their jobs fail.
        await connection.execute(
            "UPDATE item_photos SET image_key = 'items/gone.jpg' WHERE item_id = $1 AND photo = 2", good
        )
        await connection.execute(
            "UPDATE item_photos SET image_key = 'items/gone.jpg' WHERE item_id = $1 AND photo = 1", bad_cover
        )
    await once.drain()

    item = await (await client.get(f"/api/items/{good}", headers=auth)).get_json()
    assert item["status"] == "ready"
    assert [p["status"] for p in item["photos"]] == ["ready", "failed"]
    assert "could not read image" in item["photos"][1]["failure_reason"]
    public = await (await client.get(f"/api/items/{good}")).get_json()
    assert [p["status"] for p in public["photos"]] == ["ready"]  # no failure reasons for readers
    found = await client.post("/api/search/image", files={"image": image_file(photo(80))})
    assert (await found.get_json())["items"][0]["id"] == good

    failed = await (await client.get(f"/api/items/{bad_cover}", headers=auth)).get_json()
    assert failed["status"] == "failed" and [p["status"] for p in failed["photos"]] == ["failed", "ready"]
    # Making the embedded photo the cover makes the item searchable.
    moved = await client.patch(f"/api/items/{bad_cover}", json={"photos": [2]}, headers=auth)
    assert (await moved.get_json())["status"] == "ready"
    found = await client.post("/api/search/image", files={"image": image_file(photo(83))})
    assert (await found.get_json())["items"][0]["id"] == bad_cover
