"""Catalog API: list an item with its photo, see its status, remove it."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import DataSource, document_response, validate_request, validate_response

from webapp.auth import require_admin
from webapp.context import services
from webapp.errors import ApiError
from webapp.items.repo import Item, delete_item, select_item
from webapp.items.service import ItemUpload, create_item
from webapp.ratelimit import rate_limited
from webapp.schemas import ItemAccepted, ItemOut, NoContent, document_errors, parse_item_id

blueprint = Blueprint("items", __name__, url_prefix="/api/items")


async def item_out(item: Item) -> ItemOut:
    return ItemOut(
        id=item.id,
        status=item.status,
        title=item.title,
        description=item.description,
        brand=item.brand,
        category=item.category,
        size=item.size,
        colour=item.colour,
        condition=item.condition,
        price=str(item.price),
        currency=item.currency.strip(),
        image_url=await services().storage.url(item.image_key),
        failure_reason=item.failure_reason,
        created_at=item.created_at.isoformat(),
        updated_at=item.updated_at.isoformat(),
    )


@blueprint.post("")
@rate_limited("upload")
@require_admin
@validate_request(ItemUpload, source=DataSource.FORM_MULTIPART)
@validate_response(ItemAccepted, 202)
@document_errors(409, 413, 415, 422, 503)
async def post_item(data: ItemUpload) -> tuple[ItemAccepted, int]:
    """List an item: a photo plus its fields. Embedding happens in the background."""
    photo = data.image.read()
    item_id = await create_item(services(), data, photo)
    return ItemAccepted(id=item_id, status="pending", url=f"/api/items/{item_id}"), 202


@blueprint.get("/<raw_id>")
@validate_response(ItemOut)
@document_errors(400, 404)
async def get_item(raw_id: str) -> ItemOut:
    """An item and its status: pending, ready (searchable) or failed (with the reason)."""
    item_id = parse_item_id(raw_id)
    async with services().pool.acquire() as connection:
        item = await select_item(connection, item_id)
    if item is None:
        raise ApiError(404, "not_found", f"There is no item {item_id}.")
    return await item_out(item)


@blueprint.delete("/<raw_id>")
@require_admin
@document_response(NoContent, 204)
@document_errors(400, 404)
async def remove_item(raw_id: str) -> Response:
    """Remove an item from the catalog and from search."""
    item_id = parse_item_id(raw_id)
    async with services().pool.acquire() as connection:
        removed = await delete_item(connection, item_id)
    if not removed:
        raise ApiError(404, "not_found", f"There is no item {item_id}.")
    return Response(status=204)
