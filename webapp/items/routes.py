"""Catalog API: list an item with its photo, see its status, remove it."""

from __future__ import annotations

from quart import Blueprint, Response
from quart_schema import DataSource, document_response, validate_request, validate_response

from webapp.auth import require_admin
from webapp.context import services
from webapp.errors import ApiError
from webapp.items.repo import Item, delete_item, select_item
from webapp.items.service import ItemUpload, create_item
from webapp.schemas import ErrorOut, ItemAccepted, ItemOut, parse_item_id

blueprint = Blueprint("items", __name__, url_prefix="/api/items")


async def item_out(item: Item) -> ItemOut:
    return ItemOut.from_row(item, await services().storage.url(item.image_key))


@blueprint.post("")
@require_admin
@validate_request(ItemUpload, source=DataSource.FORM_MULTIPART)
@validate_response(ItemAccepted, 202)
@document_response(ErrorOut, 409)
async def post_item(data: ItemUpload) -> tuple[ItemAccepted, int]:
    """List an item: a photo plus its fields. Embedding happens in the background."""
    photo = data.image.read()
    item_id = await create_item(services(), data, photo)
    return ItemAccepted(id=item_id, status="pending", url=f"/api/items/{item_id}"), 202


@blueprint.get("/<raw_id>")
@validate_response(ItemOut)
@document_response(ErrorOut, 404)
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
async def remove_item(raw_id: str) -> Response:
    """Remove an item from the catalog and from search."""
    item_id = parse_item_id(raw_id)
    async with services().pool.acquire() as connection:
        removed = await delete_item(connection, item_id)
    if not removed:
        raise ApiError(404, "not_found", f"There is no item {item_id}.")
    return Response(status=204)
