"""A living catalog: items edited, reserved, sold and listed, against the real services."""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from tests.webapp.conftest import image_file, photo, services_of, unsigned, upload
from webapp.embedding.worker import EmbeddingWorker


async def listed(client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str], count: int) -> list[int]:
    ids = []
    for seed in range(count):
        response = await upload(
            client, photo(seed), auth, title=f"Faded denim jacket {seed}", price=f"{10 + seed}.00"
        )
        ids.append((await response.get_json())["id"])
    assert await worker.drain() == count
    return ids


async def patch(client: QuartClient, item_id: int, auth: dict[str, str], **body: Any) -> Any:
    return await client.patch(f"/api/items/{item_id}", json=body, headers=Headers(auth))


async def search_ids(client: QuartClient, **params: str) -> list[int]:
    page = await (await client.get("/api/search", query_string=params)).get_json()
    return [item["id"] for item in page["items"]]


async def test_sold_and_reserved_items_leave_search_similar_and_suggestions_at_once(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = await listed(client, worker, auth, 4)
    svc = services_of(app)
    assert svc.suggester is not None
    sold = ids[1]
    # Warm every cache first: results, similar-items and suggestion previews.
    assert sold in await search_ids(client, q="denim jacket")
    assert sold in await search_ids(client, q="denim jacket", mode="keyword")
    similar = await (await client.get(f"/api/items/{ids[0]}/similar")).get_json()
    assert sold in [i["id"] for i in similar["items"]]
    assert sold in [h.id for h in (await svc.suggester.suggest("faded", svc.queries)).items]

    response = await patch(client, sold, auth, status="sold")
    assert response.status_code == 200
    assert (await response.get_json())["status"] == "sold"
    assert sold not in await search_ids(client, q="denim jacket")
    assert sold not in await search_ids(client, q="denim jacket", mode="keyword")
    assert sold not in await search_ids(client)
    similar = await (await client.get(f"/api/items/{ids[0]}/similar")).get_json()
    assert sold not in [i["id"] for i in similar["items"]]
    assert sold not in [h.id for h in (await svc.suggester.suggest("faded", svc.queries)).items]

    assert (await patch(client, ids[2], auth, status="reserved")).status_code == 200
    assert ids[2] not in await search_ids(client, q="denim jacket")
    # Available again: back in search, searchable as before (its embedding was kept).
    back = await patch(client, ids[2], auth, status="available")
    assert (await back.get_json())["status"] == "ready"
    assert ids[2] in await search_ids(client, q="denim jacket")


async def test_text_changes_are_searchable_at_once_and_queue_nothing(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = await listed(client, worker, auth, 2)
    response = await patch(
        client, ids[0], auth, title="Burgundy velvet blazer", price="49.90", size="L", brand=""
    )
    body = await response.get_json()
    assert response.status_code == 200, body
    assert (body["title"], body["price"], body["size"], body["brand"]) == (
        "Burgundy velvet blazer",
        "49.90",
        "L",
        None,
    )
    assert await search_ids(client, q="velvet blazer", mode="keyword") == [ids[0]]
    # Typo correction knows the new words at once.
    assert await search_ids(client, q="velvett blazer", mode="keyword") == [ids[0]]
    async with services_of(app).pool.acquire() as connection:
        queued = await connection.fetchval("SELECT count(*) FROM embedding_jobs WHERE status = 'queued'")
    assert queued == 0


async def test_a_new_photo_is_re_embedded_through_the_queue(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = await listed(client, worker, auth, 2)
    new_photo = photo(40)
    response = await client.patch(
        f"/api/items/{ids[0]}",
        form={"title": "Re-photographed jacket"},
        files={"image": image_file(new_photo)},
        headers=Headers(auth),
    )
    assert response.status_code == 200, await response.get_data(as_text=True)
    assert (await response.get_json())["status"] == "ready"  # the old vector serves until the new one
    assert await worker.drain() == 1
    found = await client.post("/api/search/image", files={"image": image_file(new_photo)})
    top = (await found.get_json())["items"][0]
    assert top["id"] == ids[0] and top["score"] > 0.999
    # Another item's photo is refused, and nothing changes.
    taken = await client.patch(
        f"/api/items/{ids[1]}", files={"image": image_file(new_photo)}, headers=Headers(auth)
    )
    assert taken.status_code == 409
    assert (await taken.get_json())["error"]["code"] == "duplicate_image"


async def test_listing_filters_and_pages_by_cursor(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = await listed(client, worker, auth, 5)
    await patch(client, ids[0], auth, status="sold")
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = await (await client.get("/api/items", query_string=params, headers=Headers(auth))).get_json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    sold = await (
        await client.get("/api/items", query_string={"status": "sold"}, headers=Headers(auth))
    ).get_json()
    assert [i["id"] for i in sold["items"]] == [ids[0]]
    cheap = await (
        await client.get("/api/items", query_string={"price_max": "11"}, headers=Headers(auth))
    ).get_json()
    assert sorted(i["id"] for i in cheap["items"]) == ids[:2]


async def test_bad_edits_get_clear_errors_and_change_nothing(
    client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    ids = await listed(client, worker, auth, 1)
    before = unsigned(await (await client.get(f"/api/items/{ids[0]}", headers=auth)).get_json())
    cases = [
        ({"status": "gone"}, 422),
        ({"price": "-3"}, 422),
        ({"title": ""}, 422),
        ({"colour": "red", "nope": 1}, 422),
        ({}, 422),
    ]
    for body, status in cases:
        response = await patch(client, ids[0], auth, **body)
        assert response.status_code == status, body
        assert set((await response.get_json())["error"]) >= {"code", "message"}
    assert (await patch(client, 999_999, auth, status="sold")).status_code == 404
    assert (await patch(client, ids[0], {}, status="sold")).status_code == 401
    not_json = await client.patch(f"/api/items/{ids[0]}", data="[1]", headers=Headers(auth))
    assert not_json.status_code == 400
    assert (await client.get("/api/items")).status_code == 401
    bad_cursor = await client.get("/api/items", query_string={"cursor": "abc"}, headers=Headers(auth))
    assert bad_cursor.status_code == 422
    after = unsigned(await (await client.get(f"/api/items/{ids[0]}", headers=auth)).get_json())
    assert after == before


async def test_openapi_describes_interpretation_facets_and_the_catalog_routes(client: QuartClient) -> None:
    spec = await (await client.get("/openapi.json")).get_json()
    schemas = spec["components"]["schemas"]
    search = spec["paths"]["/api/search"]["get"]
    page = search["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert {"interpreted", "facets", "facets_scope"} <= set(page)
    assert {"q", "filters"} <= set(schemas["Interpreted"]["properties"])
    assert {"FacetValue", "PriceBucket"} <= set(schemas)
    assert {"facets", "parse"} <= {p["name"] for p in search["parameters"]}
    patch_doc = spec["paths"]["/api/items/{raw_id}"]["patch"]
    body = patch_doc["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert {"status", "price", "title"} <= set(body)
    listing = spec["paths"]["/api/items"]["get"]
    assert {"cursor", "status", "brand"} <= {p["name"] for p in listing["parameters"]}
