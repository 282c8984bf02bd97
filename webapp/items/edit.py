"""Changing a listing: its fields, its photo (re-embedded through the queue) and its sale status."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator
from pydantic.fields import FieldInfo

from webapp.catalog.garment import SaleStatus
from webapp.embedding import jobs
from webapp.http.errors import ApiError
from webapp.items.repo import Item, select_live_by_image, update_item
from webapp.items.service import ItemFields, accept_photo, invalid_fields, recording_photo
from webapp.services import Services


class _PatchRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _blank_clears(cls, data: object) -> object:
        # HTML forms send "" for a field emptied; for an optional field that means "clear it".
        if isinstance(data, dict):
            return {k: (None if isinstance(v, str) and v.strip() == "" else v) for k, v in data.items()}
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
ItemPatch: type[_PatchRules] = create_model("ItemPatch", __base__=_PatchRules, **_PATCH_FIELDS)


def parse_patch(data: dict[str, Any]) -> _PatchRules:
    try:
        return ItemPatch.model_validate(data)
    except ValidationError as error:
        raise invalid_fields(error) from None


async def edit_item(services: Services, item_id: int, patch: _PatchRules, photo: bytes | None) -> Item:
    """Apply the change; a new photo is accepted as an upload's is, stored with the change and
    queued for embedding with it."""
    changes = patch.model_dump(exclude_unset=True, exclude={"status"})
    sale_status: str | None = getattr(patch, "status", None)
    if not changes and sale_status is None and photo is None:
        raise ApiError(
            422, "invalid_fields", "Nothing to change: send at least one field, a photo or a status."
        )
    image = await accept_photo(services, photo) if photo is not None else None
    async with services.pool.acquire() as connection:
        if image is not None:
            existing = await select_live_by_image(connection, image.sha256)
            if existing is not None and existing != item_id:
                raise _duplicate(existing)
            if existing == item_id:
                image = None  # the photo it already has: nothing to store or embed again
        try:
            async with contextlib.AsyncExitStack() as stack:
                if image is not None:
                    key = await stack.enter_async_context(recording_photo(services, connection, image))
                    changes.update(image_key=key, image_sha256=image.sha256)
                async with connection.transaction():
                    item = await update_item(connection, item_id, changes, sale_status)
                    if item is not None and image is not None:
                        # Text alone changes no vector; a new photo does, through the durable queue.
                        await jobs.requeue_item(connection, item_id, services.model_key)
                if item is None:
                    # Inside the photo's transaction: no photo is stored for an item that is not there.
                    raise ApiError(404, "not_found", f"There is no item {item_id}.")
        except asyncpg.UniqueViolationError:
            raise _duplicate(await select_live_by_image(connection, changes["image_sha256"])) from None
    return item


def _duplicate(existing: int | None) -> ApiError:
    return ApiError(
        409,
        "duplicate_image",
        f"This photo is already listed as item {existing}; upload a different photo.",
        {"existing_id": existing},
    )
