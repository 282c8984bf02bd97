"""``POST /api/webhooks/shopify``: Shopify's product webhooks keep the catalog in step.

Shopify signs each delivery: ``X-Shopify-Hmac-Sha256`` is the base64 HMAC-SHA256 of the raw
body under the shop's webhook secret. The signature is checked, in constant time, before the
body is parsed; a delivery id already applied (``X-Shopify-Webhook-Id``) changes nothing. The
request only records the listing's fields and photo URLs in the durable import queue and
answers at once (Shopify expects an answer within seconds and retries otherwise); the
embedding worker's import loop fetches the photos and applies it (webapp/imports/drain.py).
No CORS: a browser has no business posting here.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from pydantic import BaseModel
from quart import Blueprint, request
from quart_schema import validate_response

from webapp.http.errors import ApiError
from webapp.http.schemas import document_errors
from webapp.imports import repo
from webapp.imports.shopify import from_webhook
from webapp.services import services

blueprint = Blueprint("webhooks", __name__, url_prefix="/api/webhooks")

# A product with many variants and images is a few hundred kilobytes at most.
MAX_BODY_BYTES = 2 * 1024 * 1024
UPSERT_TOPICS = frozenset({"products/create", "products/update"})


class WebhookOut(BaseModel):
    """What the delivery did: ``queued`` (an import or removal will follow), ``duplicate`` (this
    delivery id was applied before) or ``ignored`` (a topic or product that lists nothing)."""

    status: str
    reason: str | None = None


def signature_ok(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is Shopify's signature of ``body``, compared in constant time."""
    if not header:
        return False
    expected = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode("ascii", "replace"))


async def _raw_body() -> bytes:
    length = request.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"A webhook body may be at most {MAX_BODY_BYTES} bytes.")
    body = await request.get_data(cache=False, as_text=False, parse_form_data=False)
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, "too_large", f"A webhook body may be at most {MAX_BODY_BYTES} bytes.")
    return body


@blueprint.post("/shopify")
@validate_response(WebhookOut)
@document_errors(400, 401, 404, 413)
async def shopify_webhook() -> WebhookOut:
    """A Shopify product webhook (products/create, products/update, products/delete), signed
    with the shop's secret (PRETHRIFT_SHOPIFY_WEBHOOK_SECRET)."""
    svc = services()
    secret = svc.settings.imports.shopify_webhook_secret
    if secret is None:
        raise ApiError(404, "not_configured", "Shopify webhooks are not set up here (no webhook secret).")
    body = await _raw_body()
    if not signature_ok(secret.get_secret_value().encode(), body, request.headers.get("X-Shopify-Hmac-Sha256")):
        raise ApiError(401, "bad_signature", "X-Shopify-Hmac-Sha256 is missing or does not sign this body.")
    delivery = request.headers.get("X-Shopify-Webhook-Id", "").strip()
    topic = request.headers.get("X-Shopify-Topic", "").strip()
    if not delivery or len(delivery) > 200:
        raise ApiError(400, "missing_webhook_id", "X-Shopify-Webhook-Id is missing or too long.")
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ApiError(400, "invalid_json", "The webhook body is not JSON.") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "invalid_json", "The webhook body is not a JSON object.")
    sender = request.headers.get("X-Shopify-Shop-Domain", "shopify").strip()[:255] or "shopify"
    async with svc.pool.acquire() as connection, connection.transaction():
        if not await repo.first_delivery(
            connection, sender, delivery, svc.settings.imports.webhook_replay_window_s
        ):
            return WebhookOut(status="duplicate")
        return await _apply(connection, topic, payload, svc.settings.imports.webhook_replay_window_s)


def _timestamp(value: object) -> datetime | None:
    """Shopify's ISO 8601 time with its offset ("2024-03-01T10:00:00-05:00"), or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


async def _apply(connection: Any, topic: str, payload: dict[str, Any], window_s: int) -> WebhookOut:
    if topic == "products/delete":
        product_id = payload.get("id")
        handle = await repo.handle_of_product(connection, product_id) if isinstance(product_id, int) else None
        if handle is None:
            return WebhookOut(status="ignored", reason="no listing was imported from this product")
        await repo.enqueue_import(connection, handle, "delete", {"product_id": product_id})
        return WebhookOut(status="queued")
    if topic not in UPSERT_TOPICS:
        return WebhookOut(status="ignored", reason=f"topic {topic!r} is not a product change")
    product = from_webhook(payload)
    if not product.handle:
        return WebhookOut(status="ignored", reason=product.problem)
    updated_at = _timestamp(payload.get("updated_at"))
    if updated_at is not None and updated_at < datetime.now(UTC) - timedelta(seconds=window_s):
        # Signed, but older than the ids remembered against replays: a captured request.
        return WebhookOut(status="ignored", reason="the delivery is older than the replay window")
    # Known from now on, so a delete that arrives before the import ran still finds it.
    if product.product_id is not None and not await repo.remember_product(
        connection, product.handle, product.product_id, updated_at
    ):
        return WebhookOut(status="ignored", reason="a newer version of the product was received already")
    if not product.listed:  # drafted or archived in the shop: no longer for sale here either
        await repo.enqueue_import(connection, product.handle, "delete", {"product_id": product.product_id})
        return WebhookOut(status="queued", reason="the product is not active in the shop")
    if product.problem is not None:
        return WebhookOut(status="ignored", reason=product.problem)
    job = {"fields": product.fields, "photos": product.photos, "product_id": product.product_id}
    await repo.enqueue_import(connection, product.handle, "upsert", job)
    return WebhookOut(status="queued")
