"""Catalog API: list an item with its photos, see its status, change it, remove it."""

from __future__ import annotations

from typing import Any

import asyncpg
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
from webapp.http.schemas import NoContent, document_errors, parse_external_id, parse_item_id
from webapp.items.edit import ItemPatch, edit_item, parse_patch
from webapp.items.photos import Photo, select_photos
from webapp.items.repo import Item, list_items, select_by_external_id, select_item
from webapp.items.schemas import ItemAccepted, ItemListOut, ItemListQuery, ItemOut, ItemUpserted, PhotoOut
from webapp.items.service import ItemUpload, create_item, remove_listing
from webapp.items.upsert import upsert_external
from webapp.services import services

blueprint = Blueprint("items", __name__, url_prefix="/api/items")
# What a reader without the admin token may see: the items search can return.
PUBLIC_STATUSES = frozenset({"ready"})


async def item_out(item: Item, photos: list[Photo] | None = None) -> ItemOut:
    storage = services().storage
    if photos is None:
        async with services().pool.acquire() as connection:
            photos = (await select_photos(connection, [item.id]))[item.id]
    out = ItemOut.from_row(item, await storage.url(item.image_key))
    out.photos = [
        PhotoOut(
            id=p.photo,
            position=p.position,
            image_url=await storage.url(p.image_key),
            sha256=p.image_sha256,
            status=p.status,  # type: ignore[arg-type]
            failure_reason=p.failure_reason,
        )
        for p in photos
    ]
    return out


def _photos_of(upload: ItemUpload) -> list[bytes]:
    return [part.read() for part in upload.image]


@blueprint.post("")
@rate_limited("upload")
@require_admin
@validate_request(ItemUpload, source=DataSource.FORM_MULTIPART)
@validate_response(ItemAccepted, 202)
@document_errors(409, 413, 415, 422, 503)
async def post_item(data: ItemUpload) -> tuple[ItemAccepted, int]:
    """List an item: its photos (one ``image`` part each, the cover first) plus its fields.

    Each photo is embedded in the background; the item is searchable once its cover is, and
    its other photos join as they finish. 409 when a live item already has one of the photos
    (``existing_id`` names it) or the ``external_id``.
    """
    item_id = await create_item(services(), data, _photos_of(data))
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
    if not admin:
        # What search shows: the photos it can find the item by, without why others failed.
        out.photos = [p for p in out.photos if p.status == "ready"]
    return out


@blueprint.delete("/<raw_id>")
@require_admin
@document_response(NoContent, 204)
@document_errors(400, 404)
async def remove_item(raw_id: str) -> Response:
    """Remove an item from the catalog and from search."""
    item_id = parse_item_id(raw_id)
    if not await remove_listing(services(), item_id):
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
    if query_args.external_id is not None:
        params.append(query_args.external_id)
        status += f" AND i.external_id = ${len(params)}"
    where = filter_sql(query_args.filters(), params, status=status)
    before = int(query_args.cursor) if query_args.cursor else None
    svc = services()

    async def read(connection: asyncpg.Connection) -> tuple[list[Item], dict[int, list[Photo]]]:
        items = await list_items(connection, where, params, before_id=before, limit=query_args.limit)
        return items, await select_photos(connection, [item.id for item in items])

    # A listing may come from a read replica, once it has the catalog version this process knows.
    items, photos = await svc.reads.run(await svc.cache.catalog.current(svc.pool), read)
    full = len(items) == query_args.limit
    return ItemListOut(
        items=[await item_out(item, photos[item.id]) for item in items],
        next_cursor=str(items[-1].id) if full else None,
    )


@blueprint.patch("/<raw_id>")
@require_admin
@document_request(ItemPatch)
@validate_response(ItemOut)
@document_errors(400, 404, 409, 413, 415, 422, 503)
async def patch_item(raw_id: str) -> ItemOut:
    """Change a listing: any field, its sale status (available, reserved, sold), or its photos.

    JSON, or multipart/form-data with optional ``image`` parts. Photos:

    - ``image`` parts alone: the gallery becomes these photos, in order (the first is the
      cover). A part with the bytes of a photo the item has keeps that photo (not stored or
      embedded again); photos not sent are removed.
    - ``photos`` (a JSON array; in a form, a field holding one): the gallery in its new order,
      as existing photo ids and ``"new"`` where each ``image`` part goes, in the order sent.
      Photos left out are removed. ``{"photos": [3, 1]}`` makes photo 3 the cover and drops 2.

    An item has 1 to ``PRETHRIFT_LIMITS_MAX_PHOTOS_PER_ITEM`` photos (422 ``photo_count``).
    Reserved and sold items leave search at once; new photos are embedded through the queue,
    changed text alone is not re-embedded.
    """
    item_id = parse_item_id(raw_id)
    photos: list[bytes] = []
    if request.mimetype == "multipart/form-data":
        data: Any = dict((await request.form).items())
        photos = [upload.read() for upload in (await request.files).getlist("image")]
    else:
        data = await request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "invalid_json", "Send the changes as a JSON object or as multipart/form-data.")
    svc = services()
    item = await edit_item(svc, item_id, parse_patch(data), photos)
    # Result caches are keyed by the catalog version, which the change bumped; this process's
    # suggestion previews are held by prefix, so they go too.
    if svc.suggester is not None:
        svc.suggester.forget()
    return await item_out(item)


@blueprint.put("/external/<external_id>")
@rate_limited("upload")
@require_admin
@validate_request(ItemUpload, source=DataSource.FORM_MULTIPART)
@validate_response(ItemUpserted, 200)
@validate_response(ItemUpserted, 201)
@document_errors(400, 409, 413, 415, 422, 503)
async def put_external(external_id: str, data: ItemUpload) -> tuple[ItemUpserted, int]:
    """Create or update the item a shop knows by ``external_id``: its fields and its photos, as
    a POST sends them. Idempotent: 201 when it was created, 200 otherwise.

    Fields not sent take their defaults (the item becomes what was sent). Photos are compared by
    content: one the item already has is kept (neither stored nor embedded again), photos not
    sent are removed, new ones are queued. Sending the same again changes and queues nothing
    (``outcome`` "unchanged"). External ids are 1-128 ASCII letters, digits and ``- _ . ~ : @``,
    starting with a letter or digit (400 otherwise).
    """
    svc = services()
    done = await upsert_external(svc, external_id, data, _photos_of(data))
    if done.outcome != "unchanged" and svc.suggester is not None:
        svc.suggester.forget()
    out = ItemUpserted(
        id=done.item_id,
        external_id=external_id,
        outcome=done.outcome,
        photos_queued=done.photos_queued,
        url=f"/api/items/{done.item_id}",
    )
    return out, 201 if done.outcome == "created" else 200


async def _by_external_id(external_id: str) -> Item:
    async with services().pool.acquire() as connection:
        item = await select_by_external_id(connection, parse_external_id(external_id))
    if item is None:
        raise ApiError(404, "not_found", f"There is no item with external_id {external_id!r}.")
    return item


@blueprint.get("/external/<external_id>")
@require_admin
@validate_response(ItemOut)
@document_errors(400, 404)
async def get_external(external_id: str) -> ItemOut:
    """The live item a shop knows by ``external_id``, with its photos and their status."""
    return await item_out(await _by_external_id(external_id))


@blueprint.delete("/external/<external_id>")
@require_admin
@document_response(NoContent, 204)
@document_errors(400, 404)
async def delete_external(external_id: str) -> Response:
    """Remove the item a shop knows by ``external_id`` (its id is then free to list again)."""
    item = await _by_external_id(external_id)
    return await remove_item(str(item.id))
