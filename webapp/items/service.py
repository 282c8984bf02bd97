"""Listing an item: validate, accept the photo, then record item and job with the photo stored."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator

import asyncpg
import structlog
from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    model_validator,
)
from quart_schema.pydantic import File

from webapp.catalog.garment import Condition, Garment
from webapp.embedding.images import CheckedImage
from webapp.http.errors import ApiError
from webapp.http.schemas import Currency, Description, Facet, Price, SizeLabel, Title
from webapp.items.repo import insert_item_with_job, select_live_by_image
from webapp.services import Services

log = structlog.get_logger(__name__)


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

    def to_new_item(self) -> Garment:
        return Garment(**self.model_dump(exclude={"image"}))


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
    # A key of its own for each accepted photo: the object belongs to the one row that records
    # it, so deleting it when that row does not commit never takes another item's photo
    # (identical photos share a hash, never a key).
    return f"items/{image.sha256[:2]}/{image.sha256}-{secrets.token_hex(6)}.{image.extension}"


async def accept_photo(services: Services, data: bytes) -> CheckedImage:
    """A seller's photo, checked the one way every way in shares (upload, edit, catalog file).

    Its structure, size and decode cost are checked from its header, its memory is held
    against the decode budget, and every byte is decoded in a decode process within the time
    limit (413, 415, 422, or 503 with Retry-After when the budget has no room in time).
    """
    return await services.photos.checked(data)


@contextlib.asynccontextmanager
async def recording_photo(
    services: Services, connection: asyncpg.Connection, image: CheckedImage
) -> AsyncIterator[str]:
    """A transaction in which the caller records the rows that point at the photo (under the key
    yielded); the photo is stored after them, before the commit.

    Nothing is left behind on failure: rows that fail (a constraint, a duplicate) fail before
    anything is stored, and a photo stored for a transaction that then does not commit is
    deleted. Workers see the rows only once they commit, with the photo already stored.
    """
    key = image_key_for(image)
    storing = False
    try:
        async with connection.transaction():
            yield key
            storing = True  # set before the put: one that fails part way may still have written
            await services.storage.put(key, image.data, image.content_type)
    except BaseException:
        if storing:
            await _forget(services, key)
        raise


async def _forget(services: Services, key: str) -> None:
    try:
        # Shielded: a request cancelled again meanwhile still removes what it stored.
        await asyncio.shield(services.storage.delete(key))
    except Exception:  # storage unreachable: the object stays, unreferenced, and is logged
        log.exception("could not delete a photo whose item was not recorded", image_key=key)


async def create_item(services: Services, fields: ItemFields, data: bytes) -> int:
    """Accept the photo, then record the item and its embedding job with it; returns its id."""
    image = await accept_photo(services, data)
    async with services.pool.acquire() as connection:
        existing = await select_live_by_image(connection, image.sha256)
        if existing is not None:
            raise _duplicate(existing)
        try:
            async with recording_photo(services, connection, image) as key:
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
