"""Changing a listing: its fields, its photos (new ones embedded through the queue) and its sale status."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from webapp.catalog.garment import SaleStatus
from webapp.http.errors import ApiError
from webapp.items.photos import Entry, NewPhoto, duplicate_photo, owner_of, write_photos
from webapp.items.repo import Item, update_item
from webapp.items.service import (
    ItemFields,
    accept_photos,
    check_photo_count,
    invalid_fields,
    recording_photos,
    unique_conflict,
)
from webapp.services import Services


class _PatchRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _blank_clears(cls, data: object) -> object:
        # HTML forms send "" for a field emptied; for an optional field that means "clear it".
        if isinstance(data, dict):
            data = {k: (None if isinstance(v, str) and v.strip() == "" else v) for k, v in data.items()}
            order = data.get("photos")
            if isinstance(order, str):
                # A form carries the gallery order as JSON text.
                try:
                    data["photos"] = json.loads(order)
                except ValueError:
                    raise ValueError('photos must be a JSON array of photo ids and "new"') from None
        return data

    @model_validator(mode="after")
    def _required_stay(self) -> _PatchRules:
        for name in self.model_fields_set:
            info = ItemFields.model_fields.get(name)
            if info is not None and getattr(self, name) is None and info.default is not None:
                raise ValueError(f"{name} cannot be cleared")
        return self


def _optional(info: FieldInfo) -> Any:
    annotation: Any = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    return annotation | None


# Every listing field, optional, with the upload's own rules: one definition, derived.
_PATCH_FIELDS: dict[str, Any] = {
    name: (_optional(info), None) for name, info in ItemFields.model_fields.items()
}
_PATCH_FIELDS["status"] = (
    SaleStatus | None,
    Field(default=None, description="Sale status; reserved and sold items leave search at once"),
)
_PATCH_FIELDS["photos"] = (
    list[Annotated[int, Field(ge=1, le=2**31 - 1)] | Literal["new"]] | None,
    Field(
        default=None,
        description='The gallery in its new order: existing photo ids, and "new" where each uploaded '
        "image part goes (in the order sent). Photos left out are removed; the first is the cover",
    ),
)
ItemPatch: type[_PatchRules] = create_model("ItemPatch", __base__=_PatchRules, **_PATCH_FIELDS)


def parse_patch(data: dict[str, Any]) -> _PatchRules:
    try:
        return ItemPatch.model_validate(data)
    except ValidationError as error:
        raise invalid_fields(error) from None


def _check_placement(order: list[int | str] | None, sent: int) -> None:
    placed = sum(1 for entry in order or [] if entry == "new")
    if order is not None and placed != sent:
        raise ApiError(
            422,
            "unplaced_photos",
            f'photos places {placed} new photo(s) with "new" but {sent} image part(s) were sent.',
        )


def gallery_entries(order: list[int | str] | None, photos: list[NewPhoto]) -> list[Entry] | None:
    """The gallery an edit asks for: ``order`` names existing photos by id and places each new
    one with "new" (in the order they were sent); without it the new photos are the gallery."""
    if order is None:
        return list(photos) if photos else None
    _check_placement(order, len(photos))
    sent = iter(photos)
    return [next(sent) if entry == "new" else int(entry) for entry in order]


async def edit_item(
    services: Services,
    item_id: int,
    patch: _PatchRules,
    photos: bytes | list[bytes] | None = None,
) -> Item:
    """Apply the change. New photos are accepted as an upload's are, stored with the change and
    queued for embedding; kept photos are neither stored nor embedded again."""
    photos = [photos] if isinstance(photos, bytes) else (photos or [])
    changes = patch.model_dump(exclude_unset=True, exclude={"status", "photos"})
    sale_status: str | None = getattr(patch, "status", None)
    order: list[int | str] | None = getattr(patch, "photos", None)
    if not changes and sale_status is None and not photos and order is None:
        raise ApiError(
            422, "invalid_fields", "Nothing to change: send at least one field, a photo or a status."
        )
    if photos or order is not None:
        # Before any photo is decoded.
        check_photo_count(services, len(order) if order is not None else len(photos))
        _check_placement(order, len(photos))
    accepted = await accept_photos(services, photos)
    entries = gallery_entries(order, accepted)
    hashes = [p.image.sha256 for p in accepted]
    async with services.pool.acquire() as connection:
        existing = await owner_of(connection, hashes, besides=item_id) if hashes else None
        if existing is not None:
            raise duplicate_photo(existing)
        try:
            async with recording_photos(services, connection) as writes:
                if entries is not None:
                    # Photos before the item's row: the embedding worker locks jobs, photos, item.
                    await write_photos(connection, item_id, entries, services.model_key, writes)
                item = await update_item(connection, item_id, changes, sale_status)
                if item is None:
                    # Inside the photos' transaction: no photo is stored for an item that is not there.
                    raise ApiError(404, "not_found", f"There is no item {item_id}.")
        except asyncpg.UniqueViolationError as error:
            raise await unique_conflict(
                connection, error, hashes, changes.get("external_id"), besides=item_id
            ) from None
    return item
