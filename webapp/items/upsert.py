"""Create or update an item by the shop's own id, idempotently: a shop syncs its listings by
sending each as it is now (an API call, a catalog file, a webhook), and a repeat changes nothing.

Photos are compared by content: a photo the item already has (the same bytes as sent before, or
as stored) is kept without being decoded, stored or embedded again; photos no longer sent are
removed; new ones are accepted as an upload's are and queued for embedding.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple, dataclass
from typing import Literal

import asyncpg

from webapp.catalog.garment import GARMENT_COLUMNS
from webapp.http.errors import ApiError
from webapp.http.schemas import parse_external_id
from webapp.items.photos import Entry, NewPhoto, Photo, duplicate_photo, owner_of, select_photos, write_photos
from webapp.items.repo import Item, select_by_external_id, update_item
from webapp.items.service import (
    ItemFields,
    accept_photo,
    check_photo_count,
    create_item,
    recording_photos,
    unique_conflict,
)
from webapp.services import Services

Outcome = Literal["created", "updated", "unchanged"]


@dataclass(frozen=True)
class UpsertResult:
    outcome: Outcome
    item_id: int
    photos_queued: int  # new photos queued for embedding (0 when nothing changed)


async def upsert_external(
    services: Services, external_id: str, fields: ItemFields, photos: list[bytes]
) -> UpsertResult:
    """Make the live item known by ``external_id`` have exactly ``fields`` and ``photos`` (in
    order, the cover first), creating it when there is none.

    Raises ApiError: 400 for a malformed id, 422 for a photo count or fields out of bounds (or
    a body naming another external_id), 409 when another item has one of the photos, and the
    photo checks' 413/415/422/503.
    """
    parse_external_id(external_id)
    if fields.external_id is not None and fields.external_id != external_id:
        raise ApiError(
            422,
            "external_id_mismatch",
            f"The body says external_id {fields.external_id!r} but the path says {external_id!r}.",
        )
    fields = fields.model_copy(update={"external_id": external_id})
    check_photo_count(services, len(photos))
    # Twice at most: a create that loses a race with another create of the same id updates it.
    for attempt in range(2):
        async with services.pool.acquire() as connection:
            item = await select_by_external_id(connection, external_id)
            current = (await select_photos(connection, [item.id]))[item.id] if item is not None else []
        if item is None:
            try:
                item_id = await create_item(services, fields, photos, external_id=external_id)
            except ApiError as error:
                if error.code == "duplicate_external_id" and attempt == 0:
                    continue
                raise
            return UpsertResult("created", item_id, len(photos))
        return await _update(services, item, current, fields, photos)
    raise AssertionError("unreachable: the second attempt returns or raises")


async def _update(
    services: Services, item: Item, current: list[Photo], fields: ItemFields, photos: list[bytes]
) -> UpsertResult:
    entries = await _entries(services, current, photos)
    wanted = fields.to_new_item()
    changes = {
        column: value
        for column, value in zip(GARMENT_COLUMNS, astuple(wanted), strict=True)
        if getattr(item, column) != value
    }
    same_gallery = [e if isinstance(e, int) else None for e in entries] == [p.photo for p in current]
    if not changes and same_gallery:
        return UpsertResult("unchanged", item.id, 0)
    new = [e for e in entries if isinstance(e, NewPhoto)]
    hashes = [p.image.sha256 for p in new]
    async with services.pool.acquire() as connection:
        existing = await owner_of(connection, hashes, besides=item.id) if hashes else None
        if existing is not None:
            raise duplicate_photo(existing)
        try:
            async with recording_photos(services, connection) as writes:
                # Photos before the item's row: the embedding worker locks jobs, photos, item.
                await write_photos(connection, item.id, entries, services.model_key, writes)
                if await update_item(connection, item.id, changes, None) is None:
                    raise ApiError(404, "not_found", f"There is no item {item.id}.")
        except asyncpg.UniqueViolationError as error:
            raise await unique_conflict(connection, error, hashes, item.external_id, besides=item.id) from None
    return UpsertResult("updated", item.id, writes.queued)


async def _entries(services: Services, current: list[Photo], photos: list[bytes]) -> list[Entry]:
    """Each sent photo as the item's existing photo with the same content, else accepted anew."""
    known: dict[str, int] = {}
    for photo in current:
        known[photo.image_sha256] = photo.photo
        if photo.source_sha256 is not None:
            known[photo.source_sha256] = photo.photo
    entries: list[Entry] = []
    for data in photos:
        sent = hashlib.sha256(data).hexdigest()
        if sent in known:
            entries.append(known[sent])  # not decoded again: the same bytes were checked before
        else:
            entries.append(NewPhoto(await accept_photo(services, data), sent))
    return entries
