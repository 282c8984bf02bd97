"""A listing's life: uploaded, pending, embedded, found, removed."""

from __future__ import annotations

import httpx
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import image_file, photo, services_of, upload
from webapp.embedding.worker import EmbeddingWorker


async def test_upload_is_accepted_pending_then_ready_and_found_by_its_own_photo(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = []
    for seed in range(6):
        response = await upload(client, photo(seed), auth, title=f"Item {seed}")
        assert response.status_code == 202
        body = await response.get_json()
        assert body["status"] == "pending"
        ids.append(body["id"])

    status = await (await client.get(f"/api/items/{ids[3]}", headers=auth)).get_json()
    assert status["status"] == "pending"
    # Not searchable until embedded.
    page = await (await client.get("/api/search", query_string={"q": "jacket"})).get_json()
    assert page["items"] == []

    assert await worker.drain() == 6

    item = await (await client.get(f"/api/items/{ids[3]}", headers=auth)).get_json()
    assert item["status"] == "ready"
    assert item["price"] == "34.50" and item["currency"] == "USD" and item["size"] == "M"

    for seed, item_id in enumerate(ids):
        response = await client.post("/api/search/image", files={"image": image_file(photo(seed))})
        assert response.status_code == 200
        hits = (await response.get_json())["items"]
        assert hits[0]["id"] == item_id
        assert hits[0]["score"] > 0.999
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


async def test_text_search_pages_carry_what_a_shopper_needs(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    for seed in range(5):
        assert (await upload(client, photo(seed), auth, title=f"Coat {seed}", price="12.00")).status_code == 202
    await worker.drain()

    first = await (await client.get("/api/search", query_string={"q": "wool coat", "limit": "3"})).get_json()
    assert len(first["items"]) == 3 and first["next_offset"] == 3
    hit = first["items"][0]
    assert set(hit) >= {"id", "title", "brand", "size", "price", "currency", "image_url", "score"}
    assert hit["price"] == "12.00"
    second = await (
        await client.get("/api/search", query_string={"q": "wool coat", "limit": "3", "offset": "3"})
    ).get_json()
    assert len(second["items"]) == 2 and second["next_offset"] is None
    seen = [h["id"] for h in first["items"] + second["items"]]
    assert len(set(seen)) == 5


async def test_image_urls_are_presigned_and_serve_the_photo(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    data = photo(11)
    item_id = (await (await upload(client, data, auth)).get_json())["id"]
    await worker.drain()
    url = (await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json())["image_url"]
    assert "X-Amz-Signature" in url
    async with httpx.AsyncClient() as http:
        fetched = await http.get(url)
    assert fetched.status_code == 200
    assert fetched.content == data


async def test_similar_excludes_the_item_itself(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = [(await (await upload(client, photo(s), auth)).get_json())["id"] for s in range(4)]
    await worker.drain()
    page = await (await client.get(f"/api/items/{ids[0]}/similar")).get_json()
    found = [h["id"] for h in page["items"]]
    assert ids[0] not in found
    assert sorted(found) == sorted(ids[1:])


async def test_delete_removes_item_from_search_and_frees_its_photo(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    data = photo(21)
    item_id = (await (await upload(client, data, auth)).get_json())["id"]
    other = (await (await upload(client, photo(22), auth)).get_json())["id"]
    await worker.drain()
    before = await client.post("/api/search/image", files={"image": image_file(data)})
    assert (await before.get_json())["items"][0]["id"] == item_id

    response = await client.delete(f"/api/items/{item_id}", headers=auth)
    assert response.status_code == 204

    assert (await client.get(f"/api/items/{item_id}")).status_code == 404
    after = await client.post("/api/search/image", files={"image": image_file(data)})
    assert [h["id"] for h in (await after.get_json())["items"]] == [other]
    assert (await client.delete(f"/api/items/{item_id}", headers=auth)).status_code == 404
    # The same photo may be listed again once its listing is gone.
    assert (await upload(client, data, auth)).status_code == 202


async def test_duplicate_photo_is_detected(client: QuartClient, auth: dict[str, str], app: Quart) -> None:
    first = await (await upload(client, photo(31), auth)).get_json()
    response = await upload(client, photo(31), auth, title="Same photo, other title")
    assert response.status_code == 409
    body = await response.get_json()
    assert body["error"]["code"] == "duplicate_image"
    assert str(first["id"]) in body["error"]["message"]
    async with services_of(app).pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM items") == 1
        assert await connection.fetchval("SELECT count(*) FROM embedding_jobs") == 1


async def test_openapi_document_and_docs_page(client: QuartClient) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    assert {"/api/items", "/api/search", "/api/search/image", "/api/items/{raw_id}/similar"} <= set(
        spec["paths"]
    )
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in (await docs.get_data(as_text=True)).lower()


async def test_health_and_readiness(client: QuartClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert (await ready.get_json())["model"] == "prethrift-tiny/random-seed0"
