"""Listing an item: validate, store the photo durably, then record item and job together."""

from __future__ import annotations

import asyncio

import asyncpg
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    model_validator,
)
from quart_schema.pydantic import File

from webapp.context import Services
from webapp.errors import ApiError
from webapp.images import CheckedImage, check_image, read_header
from webapp.items.repo import NewItem, insert_item_with_job, select_live_by_image
from webapp.schemas import Condition, Currency, Description, Facet, Price, SizeLabel, Title


class ItemFields(BaseModel):
    """The fields of a listing, as sent with the photo."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    brand: Facet | None = None
    category: Facet | None = None
    size: SizeLabel | None = None
    colour: Facet | None = None
    condition: Condition | None = None
    price: Price
    currency: Currency = "USD"

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: object) -> object:
        # HTML forms and CSV files send "" for a field left empty.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
        return data

    def to_new_item(self) -> NewItem:
        return NewItem(**self.model_dump(exclude={"image"}))


class ItemUpload(ItemFields):
    """A listing as uploaded: the fields plus the photo (multipart/form-data)."""

    image: File


def parse_fields(form: dict[str, str]) -> ItemFields:
    """Validate fields from a catalog file; blank optional fields count as absent."""
    try:
        return ItemFields.model_validate(form)
    except ValidationError as error:
        raise invalid_fields(error) from None


def invalid_fields(error: ValidationError) -> ApiError:
    """A 422 naming each field that failed validation and why."""
    problems = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]} for e in error.errors()]
    text = "; ".join(f"{p['field'] or 'body'}: {p['problem']}" for p in problems)
    return ApiError(422, "invalid_fields", f"Invalid item fields: {text}", {"problems": problems})


def image_key_for(image: CheckedImage) -> str:
    # Content-addressed: a retried upload rewrites the same object, never a second one.
    return f"items/{image.sha256[:2]}/{image.sha256}.{image.extension}"


async def create_item(services: Services, fields: ItemFields, data: bytes) -> int:
    """Store the photo, then the item and its embedding job in one transaction; returns its id."""
    max_bytes = services.settings.storage.max_image_bytes
    header = await asyncio.to_thread(read_header, data, max_bytes)
    async with services.decode_budget.reserve(header.decode_bytes):
        image = await asyncio.to_thread(check_image, data, max_bytes)
    async with services.pool.acquire() as connection:
        existing = await select_live_by_image(connection, image.sha256)
        if existing is not None:
            raise _duplicate(existing)
        key = image_key_for(image)
        # The photo is durable before the row that points at it: a crash in between leaves
        # an unreferenced object, never an item without its image.
        await services.storage.put(key, image.data, image.content_type)
        try:
            return await insert_item_with_job(
                connection,
                fields.to_new_item(),
                image_key=key,
                image_sha256=image.sha256,
                model_key=services.model_key,
            )
        except asyncpg.UniqueViolationError:
            # Lost a race with an identical upload.
            existing = await select_live_by_image(connection, image.sha256)
            raise _duplicate(existing) from None


def _duplicate(existing: int | None) -> ApiError:
    return ApiError(
        409,
        "duplicate_image",
        f"This photo is already listed as item {existing}; upload a different photo.",
        {"existing_id": existing},
    )
