"""The shop's own id: create-or-update by it, idempotently; read, list and delete by it."""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from tests.webapp.conftest import listing, photo, services_of
from tests.webapp.items.conftest import image_parts, key_of, object_exists, queued_jobs, upload_photos
from webapp.catalog.version import read_catalog_version
from webapp.embedding.worker import EmbeddingWorker
from webapp.items.service import ItemFields
from webapp.items.upsert import upsert_external


async def put(
    client: QuartClient, external_id: str, photos: list[bytes], auth: dict[str, str], **fields: str
) -> Any:
    return await client.put(
        f"/api/items/external/{external_id}",
        form=listing(**fields),
        files=image_parts(photos),
        headers=Headers(auth),
    )


async def version(app: Quart) -> int:
    async with services_of(app).pool.acquire() as connection:
        return await read_catalog_version(connection)


async def test_put_creates_then_a_repeat_changes_and_queues_nothing(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    created = await put(client, "shopify-1234", [photo(1), photo(2)], auth, title="Wool coat")
    assert created.status_code == 201, await created.get_data()
    body = await created.get_json()
    assert body["outcome"] == "created" and body["photos_queued"] == 2
    assert await worker.drain() == 2
    item = await (await client.get("/api/items/external/shopify-1234", headers=auth)).get_json()
    assert item["id"] == body["id"] and item["external_id"] == "shopify-1234" and item["status"] == "ready"

    before = await version(app)
    again = await put(client, "shopify-1234", [photo(1), photo(2)], auth, title="Wool coat")
    assert again.status_code == 200
    assert (await again.get_json())["outcome"] == "unchanged"
    assert (await again.get_json())["photos_queued"] == 0
    assert await queued_jobs(app) == 0 and await version(app) == before
    same = await (await client.get("/api/items/external/shopify-1234", headers=auth)).get_json()
    assert same["updated_at"] == item["updated_at"] and same["photos"] == item["photos"]

    listed = await (
        await client.get("/api/items", query_string={"external_id": "shopify-1234"}, headers=auth)
    ).get_json()
    assert [i["id"] for i in listed["items"]] == [item["id"]]


async def test_put_replaces_only_the_photos_that_changed(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    first = await (await put(client, "SKU-9", [photo(10), photo(11), photo(12)], auth)).get_json()
    await worker.drain()
    old = (await (await client.get(f"/api/items/{first['id']}", headers=auth)).get_json())["photos"]

    # Photo 2 replaced, photo 3 dropped, a new title: one photo queued, the cover kept as it was.
    updated = await put(client, "SKU-9", [photo(10), photo(13)], auth, title="Now with a new back photo")
    body = await updated.get_json()
    assert updated.status_code == 200 and body["outcome"] == "updated" and body["photos_queued"] == 1
    assert await queued_jobs(app) == 1
    now = (await (await client.get(f"/api/items/{first['id']}", headers=auth)).get_json())["photos"]
    assert now[0]["id"] == old[0]["id"] and key_of(now[0]) == key_of(old[0]) and now[0]["status"] == "ready"
    assert now[1]["status"] == "pending" and now[1]["id"] not in {p["id"] for p in old}
    assert not await object_exists(app, key_of(old[1])) and not await object_exists(app, key_of(old[2]))
    assert await object_exists(app, key_of(old[0]))
    assert await worker.drain() == 1


async def test_get_and_delete_by_external_id_and_bad_ids(
    app: Quart, client: QuartClient, auth: dict[str, str]
) -> None:
    created = await (await put(client, "vinted:77@shop", [photo(20)], auth)).get_json()
    taken = await upload_photos(client, [photo(21)], auth, external_id="vinted:77@shop")
    assert taken.status_code == 409 and (await taken.get_json())["error"]["code"] == "duplicate_external_id"

    assert (await client.delete("/api/items/external/vinted:77@shop", headers=auth)).status_code == 204
    gone = await client.get("/api/items/external/vinted:77@shop", headers=auth)
    assert gone.status_code == 404 and (await gone.get_json())["error"]["code"] == "not_found"
    assert (await client.get(f"/api/items/{created['id']}", headers=auth)).status_code == 404
    # The id is free again, and so is the photo.
    again = await put(client, "vinted:77@shop", [photo(20)], auth)
    assert again.status_code == 201 and (await again.get_json())["id"] != created["id"]

    for bad in ["-leading-dash", "x" * 129, "sp%20ace", "caf%C3%A9"]:
        response = await client.get(f"/api/items/external/{bad}", headers=auth)
        assert response.status_code == 400, bad
        assert (await response.get_json())["error"]["code"] == "invalid_external_id"
    posted = await upload_photos(client, [photo(22)], auth, external_id="has space")
    assert posted.status_code == 422
    listed = await client.get("/api/items", query_string={"external_id": "no/slash"}, headers=auth)
    assert listed.status_code == 422
    assert (
        await client.put("/api/items/external/ok-1", form=listing(), headers=Headers(auth))
    ).status_code in (
        400,
        422,
    )


async def test_upsert_service_for_imports(app: Quart, worker: EmbeddingWorker) -> None:
    services = services_of(app)
    fields = ItemFields.model_validate(listing(title="Linen shirt"))
    created = await upsert_external(services, "csv-row-1", fields, [photo(30), photo(31)])
    assert (created.outcome, created.photos_queued) == ("created", 2)
    await worker.drain()
    repeat = await upsert_external(services, "csv-row-1", fields, [photo(30), photo(31)])
    assert (repeat.outcome, repeat.item_id, repeat.photos_queued) == ("unchanged", created.item_id, 0)
    swapped = await upsert_external(services, "csv-row-1", fields, [photo(31), photo(30)])
    assert (swapped.outcome, swapped.photos_queued) == ("updated", 0)  # reordered, nothing to embed
    cheaper = ItemFields.model_validate(listing(title="Linen shirt", price="20.00"))
    priced = await upsert_external(services, "csv-row-1", cheaper, [photo(31), photo(30)])
    assert (priced.outcome, priced.photos_queued) == ("updated", 0)
    assert await queued_jobs(app) == 0
