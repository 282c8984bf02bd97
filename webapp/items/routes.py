"""Catalog API: list an item with its photo, see its status, remove it."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request
from quart_schema import (
    DataSource,
    document_request,
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)

from webapp.catalog.filters import filter_sql
from webapp.embedding.model_keys import pending_reason
from webapp.http.auth import is_admin, require_admin
from webapp.http.errors import ApiError
from webapp.http.ratelimit import rate_limited
from webapp.http.schemas import (
    ItemAccepted,
    ItemListOut,
    ItemListQuery,
    ItemOut,
    NoContent,
    document_errors,
    parse_item_id,
)
from webapp.items.edit import ItemPatch, edit_item, parse_patch
from webapp.items.repo import Item, delete_item, list_items, select_item
from webapp.items.service import ItemUpload, create_item
from webapp.services import services

blueprint = Blueprint("items", __name__, url_prefix="/api/items")
# What a reader without the admin token may see: the items search can return.
PUBLIC_STATUSES = frozenset({"ready"})


async def item_out(item: Item) -> ItemOut:
    return ItemOut.from_row(item, await services().storage.url(item.image_key))


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
@document_errors(400, 401, 403, 404)
async def get_item(raw_id: str) -> ItemOut:
    """An item and its status: pending, ready (searchable) or failed (with the reason).

    Without a token only what search shows: a ready item. Pending, failed, reserved and sold
    items (and why an item failed) need the admin token; to anyone else they are 404, like an
    item that never existed.
    """
    item_id = parse_item_id(raw_id)
    admin = is_admin()
    async with services().pool.acquire() as connection:
        item = await select_item(connection, item_id)
        waiting = (
            await pending_reason(connection, item_id) if admin and item and item.status == "pending" else None
        )
    if item is None or not (admin or item.status in PUBLIC_STATUSES):
        raise ApiError(404, "not_found", f"There is no item {item_id}.")
    out = await item_out(item)
    out.pending_reason = waiting
    return out


@blueprint.delete("/<raw_id>")
@require_admin
@document_response(NoContent, 204)
@document_errors(400, 404)
async def remove_item(raw_id: str) -> Response:
    """Remove an item from the catalog and from search."""
    item_id = parse_item_id(raw_id)
    svc = services()
    async with svc.pool.acquire() as connection:
        removed = await delete_item(connection, item_id)
    if svc.suggester is not None:
        svc.suggester.forget()
    if not removed:
        raise ApiError(404, "not_found", f"There is no item {item_id}.")
    return Response(status=204)


@blueprint.get("")
@require_admin
@validate_querystring(ItemListQuery)
@validate_response(ItemListOut)
@document_errors(422)
async def get_items(query_args: ItemListQuery) -> ItemListOut:
    """The catalog for sellers and admins, newest first: any status, the search filters, a cursor."""
    params: list[Any] = []
    status = "i.status <> 'deleted'"
    if query_args.status is not None:
        params.append(query_args.status)
        status = f"i.status = ${len(params)}"
    where = filter_sql(query_args.filters(), params, status=status)
    before = int(query_args.cursor) if query_args.cursor else None
    async with services().pool.acquire() as connection:
        items = await list_items(connection, where, params, before_id=before, limit=query_args.limit)
    full = len(items) == query_args.limit
    return ItemListOut(
        items=[await item_out(item) for item in items],
        next_cursor=str(items[-1].id) if full else None,
    )


@blueprint.patch("/<raw_id>")
@require_admin
@document_request(ItemPatch)
@validate_response(ItemOut)
@document_errors(400, 404, 409, 413, 415, 422, 503)
async def patch_item(raw_id: str) -> ItemOut:
    """Change a listing: any field, its sale status (available, reserved, sold), or its photo.

    JSON, or multipart/form-data with an optional ``image`` part. Reserved and sold items leave
    search at once; a new photo is re-embedded through the queue, changed text alone is not.
    """
    item_id = parse_item_id(raw_id)
    photo: bytes | None = None
    if request.mimetype == "multipart/form-data":
        data: Any = dict((await request.form).items())
        upload = (await request.files).get("image")
        photo = upload.read() if upload is not None else None
    else:
        data = await request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "Send the changes as a JSON object or as multipart/form-data.")
    svc = services()
    item = await edit_item(svc, item_id, parse_patch(data), photo)
    # Result caches are keyed by the catalog version, which the change bumped; this process's
    # suggestion previews are held by prefix, so they go too.
    if svc.suggester is not None:
        svc.suggester.forget()
    return await item_out(item)
