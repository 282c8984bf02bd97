"""Shapes of API responses and query strings, shared by the routes and the OpenAPI document."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StringConstraints

from webapp.errors import ApiError

MAX_ID = 2**63 - 1


def parse_item_id(raw: str) -> int:
    """Item ids are positive integers; anything else is a 400, not a 404 or a 500."""
    if not raw.isdigit() or len(raw) > 19 or not 0 < int(raw) <= MAX_ID:
        raise ApiError(400, "invalid_id", f"{raw[:40]!r} is not an item id; ids are positive integers.")
    return int(raw)


class Page(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=1000)


class TextSearch(Page):
    q: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]


class SearchHitOut(BaseModel):
    id: int
    title: str
    brand: str | None
    category: str | None
    size: str | None
    colour: str | None
    condition: str | None
    price: str = Field(description="Exact decimal, as a string")
    currency: str
    image_url: str
    score: float = Field(description="Cosine similarity to the query, -1 to 1")


class SearchPageOut(BaseModel):
    items: list[SearchHitOut]
    limit: int
    offset: int
    next_offset: int | None


class ItemOut(BaseModel):
    id: int
    status: str = Field(description="pending, ready or failed")
    title: str
    description: str
    brand: str | None
    category: str | None
    size: str | None
    colour: str | None
    condition: str | None
    price: str
    currency: str
    image_url: str
    failure_reason: str | None
    created_at: str
    updated_at: str


class ItemAccepted(BaseModel):
    id: int
    status: str
    url: str


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody
