"""Shopify's product webhooks: signed deliveries queue an import, anything else changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson
from quart import Quart

from tests.webapp.conftest import services_of
from tests.webapp.imports.conftest import PhotoServer, shopify_signature

PRODUCT_ID = 632910392


def _product(photo_server: PhotoServer, **changes: Any) -> dict[str, Any]:
    """A products/update payload in the shape Shopify documents for its Product resource."""
    return {
        "id": PRODUCT_ID, "title": "Suede jacket", "handle": "suede-jacket", "status": "active",
        "body_html": "<p>Soft <em>tan</em> suede</p>", "vendor": "Acne Studios", "product_type": "Jackets",
        "tags": "condition:good", "options": [{"name": "Size", "position": 1, "values": ["M"]}],
        "variants": [{"id": 1, "price": "180.00", "option1": "M"}],
        "images": [{"id": 2, "position": 2, "src": photo_server.url("/p/suede-2.jpg")},
                   {"id": 1, "position": 1, "src": photo_server.url("/p/suede-1.jpg")}],
        **changes,
    }  # fmt: skip


async def _post(
    app: Quart,
    payload: dict[str, Any],
    *,
    topic: str = "products/update",
    delivery: str = "d-1",
    signature: str | None = "sign",
    body: bytes | None = None,
) -> tuple[int, dict[str, Any]]:
    raw = body if body is not None else orjson.dumps(payload)
    headers = {"Content-Type": "application/json", "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": delivery,
               "X-Shopify-Shop-Domain": "vintage-finds.myshopify.com"}  # fmt: skip
    if signature == "sign":
        headers["X-Shopify-Hmac-Sha256"] = shopify_signature(orjson.dumps(payload))
    elif signature is not None:
        headers["X-Shopify-Hmac-Sha256"] = signature
    response = await app.test_client().post("/api/webhooks/shopify", data=raw, headers=headers)
    return response.status_code, await response.get_json()


async def _queue(app: Quart) -> list[asyncpg.Record]:
    async with services_of(app).pool.acquire() as connection:
        return list(await connection.fetch("SELECT external_id, action, payload, version FROM import_jobs"))


async def test_a_signed_update_is_queued_with_its_photos_in_order(
    shop_app: Quart, photo_server: PhotoServer
) -> None:
    status, body = await _post(shop_app, _product(photo_server))
    assert (status, body["status"]) == (200, "queued")
    [job] = await _queue(shop_app)
    payload = orjson.loads(job["payload"])
    assert job["external_id"] == "suede-jacket" and job["action"] == "upsert"
    assert payload["photos"] == [photo_server.url("/p/suede-1.jpg"), photo_server.url("/p/suede-2.jpg")]
    assert payload["fields"]["description"] == "Soft tan suede" and payload["fields"]["brand"] == "Acne Studios"
    assert not photo_server.hits  # photos are fetched by the worker, never inside the request


async def test_unsigned_tampered_and_foreign_deliveries_change_nothing(
    shop_app: Quart, photo_server: PhotoServer
) -> None:
    product = _product(photo_server)
    tampered = orjson.dumps({**product, "title": "Free jacket"})
    refused = [
        await _post(shop_app, product, signature=None),
        await _post(
            shop_app, product, signature=shopify_signature(orjson.dumps(product), "another shop's secret")
        ),
        await _post(shop_app, product, body=tampered),  # signed for the original body
        await _post(shop_app, product, signature="not base64 at all \u00e9"),
    ]
    assert [(status, body["error"]["code"]) for status, body in refused] == [(401, "bad_signature")] * 4
    assert await _queue(shop_app) == []
    async with services_of(shop_app).pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM webhook_deliveries") == 0


async def test_a_replayed_delivery_changes_nothing(shop_app: Quart, photo_server: PhotoServer) -> None:
    assert (await _post(shop_app, _product(photo_server), delivery="d-7"))[1]["status"] == "queued"
    async with services_of(shop_app).pool.acquire() as connection:
        await connection.execute("DELETE FROM import_jobs")  # as if the worker had applied it
    # Same delivery id, validly signed (a captured request sent again, or Shopify retrying).
    status, body = await _post(shop_app, _product(photo_server, title="Changed by a replay"), delivery="d-7")
    assert (status, body["status"]) == (200, "duplicate")
    assert await _queue(shop_app) == []


async def test_delete_maps_shopify_id_to_handle_and_drafts_leave_too(
    shop_app: Quart, photo_server: PhotoServer
) -> None:
    await _post(shop_app, _product(photo_server), delivery="d-1")
    # Shopify's products/delete payload carries only the product id.
    status, body = await _post(shop_app, {"id": PRODUCT_ID}, topic="products/delete", delivery="d-2")
    assert (status, body["status"]) == (200, "queued")
    [job] = await _queue(shop_app)
    assert (job["external_id"], job["action"], job["version"]) == ("suede-jacket", "delete", 2)
    unknown = await _post(shop_app, {"id": 1}, topic="products/delete", delivery="d-3")
    assert unknown[1]["status"] == "ignored"
    draft = _product(photo_server, id=5, handle="linen-dress", status="draft")
    await _post(shop_app, draft, topic="products/create", delivery="d-4")
    actions = {job["external_id"]: job["action"] for job in await _queue(shop_app)}
    assert actions == {"suede-jacket": "delete", "linen-dress": "delete"}


async def test_webhooks_are_off_without_a_secret_and_never_cross_origin(
    app: Quart, shop_app: Quart, photo_server: PhotoServer
) -> None:
    status, body = await _post(app, _product(photo_server))
    assert (status, body["error"]["code"]) == (404, "not_configured")
    response = await shop_app.test_client().options(
        "/api/webhooks/shopify",
        headers={"Origin": "https://evil.test", "Access-Control-Request-Method": "POST"},
    )
    assert "Access-Control-Allow-Origin" not in response.headers
    status, body = await _post(shop_app, {}, body=b"[1, 2", signature=shopify_signature(b"[1, 2"))
    assert (status, body["error"]["code"]) == (400, "invalid_json")


async def test_late_and_captured_deliveries_do_not_undo_newer_ones(
    shop_app: Quart, photo_server: PhotoServer
) -> None:
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    newer = _product(photo_server, title="Suede jacket, reduced", updated_at=hour_ago.isoformat())
    older = _product(
        photo_server, title="Suede jacket", updated_at=(hour_ago - timedelta(minutes=5)).isoformat()
    )
    assert (await _post(shop_app, newer, delivery="n-1"))[1]["status"] == "queued"
    # Shopify does not promise order: the older update, delivered after, is not applied.
    status, body = await _post(shop_app, older, delivery="n-2")
    assert (status, body["status"]) == (200, "ignored")
    [job] = await _queue(shop_app)
    assert orjson.loads(job["payload"])["fields"]["title"] == "Suede jacket, reduced"
    # A signed request captured long ago, its id forgotten by now, still changes nothing.
    ancient = _product(photo_server, id=7, handle="old-coat", updated_at="2020-01-01T00:00:00+00:00")
    assert (await _post(shop_app, ancient, delivery="n-3"))[1]["status"] == "ignored"
    assert [job["external_id"] for job in await _queue(shop_app)] == ["suede-jacket"]
