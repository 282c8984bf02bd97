"""Queued webhook imports, applied by the worker's import loop: photos fetched, item upserted."""

from __future__ import annotations

import orjson
from quart import Quart

from tests.webapp.conftest import services_of
from tests.webapp.imports.conftest import PhotoServer, shopify_signature
from webapp.imports.drain import drain_once
from webapp.imports.fetch import PhotoFetcher


async def _deliver(app: Quart, topic: str, delivery: str, payload: dict[str, object]) -> None:
    body = orjson.dumps(payload)
    response = await app.test_client().post(
        "/api/webhooks/shopify",
        data=body,
        headers={"X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": delivery,
                 "X-Shopify-Hmac-Sha256": shopify_signature(body), "Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200


async def _live(app: Quart) -> dict[str, str]:
    async with services_of(app).pool.acquire() as connection:
        rows = await connection.fetch("SELECT external_id, title FROM items WHERE status <> 'deleted'")
    return {r["external_id"]: r["title"] for r in rows}


async def test_signed_webhooks_are_applied_by_the_worker(shop_app: Quart, photo_server: PhotoServer) -> None:
    services = services_of(shop_app)
    product = {
        "id": 42, "handle": "cord-trousers", "title": "Cord trousers", "status": "active", "vendor": "Gap",
        "body_html": "<p>Brown cord</p>", "product_type": "Trousers", "tags": "",
        "options": [{"name": "Size", "position": 1}], "variants": [{"price": "25.00", "option1": "32"}],
        "images": [{"position": 1, "src": photo_server.url("/p/cord.jpg")}],
    }  # fmt: skip
    await _deliver(shop_app, "products/create", "w-1", product)
    assert await _live(shop_app) == {}  # queued, not applied inside the request
    async with PhotoFetcher(services.settings.imports, services.settings.storage) as fetcher:
        assert await drain_once(services, fetcher) == 1
        assert await _live(shop_app) == {"cord-trousers": "Cord trousers"}
        await _deliver(shop_app, "products/update", "w-2", {**product, "title": "Brown cord trousers"})
        await drain_once(services, fetcher)
        assert await _live(shop_app) == {"cord-trousers": "Brown cord trousers"}
        await _deliver(shop_app, "products/delete", "w-3", {"id": 42})
        await drain_once(services, fetcher)
        assert await _live(shop_app) == {}
        assert await drain_once(services, fetcher) == 0
