"""Shapes of the item API's answers and query strings (uploads, listings, a shop's own ids)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from webapp.catalog.garment import ListedStatus
from webapp.http.schemas import MAX_ID, ExternalId, FilterParams, GarmentOut, Timestamp


class PhotoOut(BaseModel):
    """One photo of an item, in gallery order (position 1 is the cover)."""

    id: int = Field(description="The photo's id within its item (PATCH photos lists these to reorder)")
    position: int
    image_url: str
    sha256: str = Field(description="SHA-256 of the photo as stored (metadata removed)")
    status: Literal["pending", "ready", "failed"] = Field(
        description="ready once embedded (then search finds the item by it); failed with the reason"
    )
    failure_reason: str | None


class ItemOut(GarmentOut):
    external_id: str | None = Field(default=None, description="The shop's own id, when it gave one")
    photos: list[PhotoOut] = Field(default_factory=list, description="Every photo, the cover first")
    status: str = Field(
        description="pending, ready (searchable) or failed, as the photo is embedded; reserved or sold "
        "once the seller says so (out of search)"
    )
    description: str
    failure_reason: str | None
    pending_reason: str | None = Field(
        default=None, description="why a pending item waits, when no worker is running for its model"
    )
    created_at: Timestamp
    updated_at: Timestamp


def _an_id(value: str) -> str:
    # 19 digits can still pass a bigint: 9999999999999999999 would reach the driver and fail there.
    if int(value) > MAX_ID:
        raise ValueError(f"a cursor is an item id, at most {MAX_ID}")
    return value


Cursor = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,18}$"), AfterValidator(_an_id)]


class ItemListQuery(FilterParams):
    """A seller's or admin's view of the catalog, newest first, a page at a time."""

    limit: int = Field(default=20, ge=1, le=100)
    cursor: Cursor | None = Field(default=None, description="next_cursor of the previous page")
    status: ListedStatus | None = None
    external_id: ExternalId | None = Field(default=None, description="Only the item the shop knows by this id")


class ItemListOut(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None = Field(description="Pass as cursor for the next page; none on the last")


class ItemAccepted(BaseModel):
    id: int
    status: str
    url: str


class ItemUpserted(BaseModel):
    """What PUT /api/items/external/{external_id} did."""

    id: int
    external_id: str
    outcome: Literal["created", "updated", "unchanged"]
    photos_queued: int = Field(description="New photos queued for embedding (0 on a repeat)")
    url: str
