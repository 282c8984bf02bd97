"""Listing an item: validate, accept the photos, then record item, photos and jobs with the photos stored."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from typing import Annotated

import asyncpg
import structlog
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from quart_schema.pydantic import File

from webapp.catalog.garment import Condition, Garment
from webapp.embedding.images import CheckedImage
from webapp.http.errors import ApiError
from webapp.http.schemas import Currency, Description, ExternalId, Facet, Price, SizeLabel, Title
from webapp.items.photos import NewPhoto, PhotoWrites, duplicate_photo, owner_of, write_photos
from webapp.items.repo import insert_item
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
    external_id: ExternalId | None = None

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: object) -> object:
        # HTML forms and CSV files send "" for a field left empty.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if not (isinstance(v, str) and v.strip() == "")}
        return data

    def to_new_item(self) -> Garment:
        return Garment(**self.model_dump(exclude={"image", "external_id"}))


def _as_list(value: object) -> object:
    # One part arrives as itself, several as a list (quart-schema's form reading).
    return value if isinstance(value, list) else [value]


class ItemUpload(ItemFields):
    """A listing as uploaded: the fields plus its photos (multipart/form-data), the cover first."""

    image: Annotated[
        list[File],
        BeforeValidator(_as_list),
        Field(min_length=1, description="One part per photo, in gallery order; the first is the cover"),
    ]


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


async def accept_photo(services: Services, data: bytes) -> CheckedImage:
    """A seller's photo, checked the one way every way in shares (upload, edit, catalog file).

    Its structure, size and decode cost are checked from its header, its memory is held
    against the decode budget, and every byte is decoded in a decode process within the time
    limit (413, 415, 422, or 503 with Retry-After when the budget has no room in time).
    """
    return await services.photos.checked(data)


def check_photo_count(services: Services, count: int) -> None:
    """Refuse a gallery of no photos or more than the setting allows, before decoding any."""
    most = services.settings.limits.max_photos_per_item
    if not 1 <= count <= most:
        raise ApiError(
            422,
            "photo_count",
            f"An item has 1 to {most} photos; this request would give it {count}.",
            {"max_photos": most},
        )


async def accept_photos(services: Services, photos: list[bytes]) -> list[NewPhoto]:
    """Each photo accepted by ``accept_photo``, one after another (each holds the decode budget)."""
    return [NewPhoto(await accept_photo(services, data), hashlib.sha256(data).hexdigest()) for data in photos]


@contextlib.asynccontextmanager
async def recording_photos(services: Services, connection: asyncpg.Connection) -> AsyncIterator[PhotoWrites]:
    """A transaction in which the caller records rows and photos (``write_photos``, whose writes it
    passes back through the yielded object); new photos are stored after the rows, before the
    commit, and removed photos' objects are deleted after it.

    Nothing is left behind on failure: rows that fail (a constraint, a duplicate) fail before
    anything is stored, and photos stored for a transaction that then does not commit are
    deleted. Workers see the rows only once they commit, with the photos already stored.
    """
    writes = PhotoWrites()
    storing = False
    try:
        async with connection.transaction():
            yield writes
            storing = True  # set before the puts: one that fails part way may still have written
            async with asyncio.TaskGroup() as group:
                for key, image in writes.store:
                    group.create_task(services.storage.put(key, image.data, image.content_type))
    except BaseException:
        if storing:
            for key, _ in writes.store:
                await forget_photo(services, key)
        raise
    for key in writes.removed:
        await forget_photo(services, key)


async def forget_photo(services: Services, key: str) -> None:
    """Delete a stored photo nothing points at any more; logged, not raised, when storage fails."""
    try:
        # Shielded: a request cancelled again meanwhile still removes what it stored.
        await asyncio.shield(services.storage.delete(key))
    except Exception:  # storage unreachable: the object stays, unreferenced, and is logged
        log.exception("could not delete a photo no item points at", image_key=key)


async def create_item(
    services: Services, fields: ItemFields, photos: bytes | list[bytes], *, external_id: str | None = None
) -> int:
    """Accept the photos, then record the item, its photos and their embedding jobs; returns its id."""
    photos = [photos] if isinstance(photos, bytes) else photos
    check_photo_count(services, len(photos))
    accepted = await accept_photos(services, photos)
    hashes = [p.image.sha256 for p in accepted]
    external_id = external_id or fields.external_id
    async with services.pool.acquire() as connection:
        existing = await owner_of(connection, hashes)
        if existing is not None:
            raise duplicate_photo(existing)
        try:
            async with recording_photos(services, connection) as writes:
                item_id = await insert_item(connection, fields.to_new_item(), external_id=external_id)
                await write_photos(connection, item_id, accepted, services.model_key, writes)
                return item_id
        except asyncpg.UniqueViolationError as error:
            raise await unique_conflict(connection, error, hashes, external_id) from None


async def unique_conflict(
    connection: asyncpg.Connection,
    error: asyncpg.UniqueViolationError,
    hashes: list[str],
    external_id: str | None,
    *,
    besides: int = 0,
) -> ApiError:
    """The 409 for a race lost to another write of the same photo or the same shop id."""
    if error.constraint_name == "items_external_id_live":
        return external_id_taken(external_id)
    return duplicate_photo(await owner_of(connection, hashes, besides=besides))


def external_id_taken(external_id: str | None) -> ApiError:
    return ApiError(
        409,
        "duplicate_external_id",
        f"A live item already has external_id {external_id!r}; "
        f"update it with PUT /api/items/external/{external_id}.",
        {"external_id": external_id},
    )
