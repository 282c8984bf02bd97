"""Shapes of API responses and query strings, shared by the routes and the OpenAPI document."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, Field, StringConstraints, model_validator
from quart_schema import document_response
from quart_schema.openapi import OpenAPIProvider

from webapp.errors import ApiError
from webapp.search.filters import Mode, SearchFilters, Sort

MAX_ID = 2**63 - 1


def parse_item_id(raw: str) -> int:
    """Item ids are positive integers in ASCII digits; anything else is a 400, not a 404 or a 500."""
    # str.isdigit() also accepts "²", "①" and Arabic-Indic or fullwidth digits.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19 or not 0 < int(raw) <= MAX_ID:
        raise ApiError(400, "invalid_id", f"{raw[:40]!r} is not an item id; ids are positive integers.")
    return int(raw)


class Page(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=1000)


def _printable(value: str) -> str:
    # PostgreSQL text cannot hold NUL, and no shopper types control characters.
    if any(ord(ch) < 32 and ch not in "\t\n\r" for ch in value):
        raise ValueError("must not contain control characters")
    # A lone surrogate (JSON "\\ud800") is no character: UTF-8, and so PostgreSQL, cannot hold it.
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("must be valid Unicode text (no lone surrogates)")
    return value


Printable = AfterValidator(_printable)
Facet = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=80), Printable]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Printable]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000), Printable]
SizeLabel = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20), Printable]
Query = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300), Printable]
Price = Annotated[Decimal, Field(ge=0, le=1_000_000, allow_inf_nan=False)]


class TextSearch(Page):
    """Text search; without ``q`` it lists the items that pass the filters."""

    q: Query | None = None
    mode: Mode = Mode.HYBRID
    sort: Sort = Sort.RELEVANCE
    min_score: float | None = Field(default=None, ge=-1, le=1, description="drop semantic matches below")
    category: Facet | None = None
    size: Facet | None = None
    colour: Facet | None = None
    brand: Facet | None = None
    condition: Literal["new_with_tags", "like_new", "good", "fair", "worn"] | None = None
    price_min: Price | None = None
    price_max: Price | None = None

    @model_validator(mode="after")
    def _consistent(self) -> TextSearch:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min is above price_max")
        if self.min_score is not None and (self.q is None or self.mode is Mode.KEYWORD):
            raise ValueError("min_score needs a query in semantic or hybrid mode")
        return self

    def filters(self) -> SearchFilters:
        return SearchFilters(
            category=self.category,
            size=self.size,
            colour=self.colour,
            brand=self.brand,
            condition=self.condition,
            price_min=self.price_min,
            price_max=self.price_max,
        )


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
    score: float | None = Field(description="Cosine similarity to the query, -1 to 1 (none when browsing)")
    relevance: float | None = Field(default=None, description="The ranking score (fused rank in hybrid mode)")


class SearchPageOut(BaseModel):
    items: list[SearchHitOut]
    limit: int
    offset: int
    next_offset: int | None


class StreamLineOut(SearchPageOut):
    """One line of the newline-delimited JSON stream; the last line has stage "final"."""

    MEDIA_TYPE: ClassVar[str] = "application/x-ndjson"
    stage: Literal["keyword", "final"]


class NoContent(BaseModel):
    """Done; there is nothing to return (204)."""

    NO_BODY: ClassVar[bool] = True


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


F = TypeVar("F", bound=Callable[..., object])


def document_errors(*statuses: int) -> Callable[[F], F]:
    """Document error responses of an operation, all with the one JSON error body.

    429 and 503 carry Retry-After where waiting helps (rate limits, decode budget).
    """

    def decorate(func: F) -> F:
        for status in statuses:
            func = document_response(ErrorOut, status)(func)
        return func

    return decorate


class ApiDocument(OpenAPIProvider):
    """The OpenAPI document, with response media types other than JSON (or no body at all)
    where a model says so."""

    def build_response_object(self, model: Any, headers_model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        response, definitions = super().build_response_object(model, headers_model)
        if getattr(model, "NO_BODY", False):
            response.pop("content", None)
            return response, definitions
        media_type = getattr(model, "MEDIA_TYPE", None)
        if media_type is not None:
            response["content"] = {media_type: response["content"]["application/json"]}
        return response, definitions
