"""Shapes of API responses and query strings, shared by the routes and the OpenAPI document."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import fields
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)
from quart_schema import document_response
from quart_schema.openapi import OpenAPIProvider

from webapp.catalog.filters import Mode, SearchFilters, Sort, parse_facet_names
from webapp.catalog.garment import Condition
from webapp.http.cors import ALLOWED_HEADERS, EXPOSED_HEADERS, MAX_AGE_S, PUBLIC_ROUTES
from webapp.http.errors import ApiError

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


# A page's anonymous per-tab id (random, made by the page; never derived from the shopper).
SessionId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9-]{1,64}$")]
# The id a search answer carries (webapp/analytics/log.py makes them), as its clicks name it.
SearchId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]


class Tracked(BaseModel):
    session_id: SessionId | None = Field(
        default=None,
        description="The page's anonymous per-tab id (random; up to 64 letters, digits and dashes), "
        "for the search log",
    )


class PhotoPage(Page, Tracked):
    """A page of photo search results."""


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
# A shop's own id for a listing (a Shopify handle, a SKU, a marketplace listing id): opaque to us,
# 1 to 128 characters, ASCII letters, digits and - _ . ~ : @, starting with a letter or digit, so
# that it is one URL path segment as written. The database checks the same pattern.
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._~:@-]{0,127}$"
_EXTERNAL_ID = re.compile(EXTERNAL_ID_PATTERN)
ExternalId = Annotated[
    str,
    StringConstraints(pattern=EXTERNAL_ID_PATTERN),
    Field(description="The shop's own id: 1-128 of A-Z a-z 0-9 - _ . ~ : @, starting with a letter or digit"),
]


def parse_external_id(raw: str) -> str:
    """A shop's id from a URL path; anything outside the documented pattern is a 400."""
    if not _EXTERNAL_ID.fullmatch(raw):
        raise ApiError(
            400,
            "invalid_external_id",
            f"{raw[:40]!r} is not an external id: use 1-128 ASCII letters, digits and - _ . ~ : @, "
            "starting with a letter or digit.",
        )
    return raw


# Prices are stored as numeric(12, 2): whole cents, and the API takes up to a million.
MAX_PRICE = Decimal(1_000_000)
CENT = Decimal("0.01")
# How far a written price may stretch its exponent ("1.5E+1", "10.500"): a decimal carries its
# exponent into the driver, and one of -20000 is refused by PostgreSQL after validation passed.
_PRICE_EXPONENT = 20


def _in_cents(value: Decimal) -> Decimal:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or not -_PRICE_EXPONENT <= exponent <= _PRICE_EXPONENT:
        raise ValueError(f"write the price plainly, like 34.50 (no exponent beyond ±{_PRICE_EXPONENT})")
    if len(value.as_tuple().digits) > 2 * _PRICE_EXPONENT:
        raise ValueError("a price has at most 2 decimal places")
    # Exact: the constraints before this allow at most 2 decimal places and at most a million.
    return abs(value).quantize(CENT)


Price = Annotated[
    Decimal,
    Field(ge=0, le=MAX_PRICE, decimal_places=2, allow_inf_nan=False, description="At most 1000000, in cents"),
    AfterValidator(_in_cents),
]


def _as_text(value: object) -> object:
    # Rows hold Decimal and datetime; the API sends exact decimals and ISO 8601 as strings.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _currency(value: object) -> object:
    # The column is char(3): the one place its blank padding is dropped.
    return value.strip() if isinstance(value, str) else value


def _rounded(value: object) -> object:
    return round(value, 6) if isinstance(value, float) else value


Currency = Annotated[str, BeforeValidator(_currency), StringConstraints(pattern=r"^[A-Z]{3}$")]
DecimalText = Annotated[str, BeforeValidator(_as_text), Field(description="Exact decimal, as a string")]
Timestamp = Annotated[str, BeforeValidator(_as_text), Field(description="ISO 8601")]
Score = Annotated[float | None, BeforeValidator(_rounded)]


class FilterParams(BaseModel):
    """What a listing can be narrowed by: the one definition of the filter parameters."""

    category: Facet | None = None
    size: Facet | None = None
    colour: Facet | None = None
    brand: Facet | None = None
    condition: Condition | None = None
    price_min: Price | None = None
    price_max: Price | None = None

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.price_min is not None and self.price_max is not None and self.price_min > self.price_max:
            raise ValueError("price_min is above price_max")
        return self

    def filters(self) -> SearchFilters:
        return SearchFilters(**{f.name: getattr(self, f.name) for f in fields(SearchFilters)})


class TextSearch(Page, FilterParams, Tracked):
    """Text search; without ``q`` it lists the items that pass the filters."""

    q: Query | None = None
    mode: Mode = Mode.HYBRID
    sort: Sort = Sort.RELEVANCE
    min_score: float | None = Field(default=None, ge=-1, le=1, description="drop semantic matches below")
    facets: str | None = Field(
        default=None,
        description="Comma-separated fields to count (size, brand, colour, condition, category, price) or all",
    )
    parse: bool = Field(
        default=True,
        description="Read constraints written in q (price, size, colour, brand, condition) as filters",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TextSearch:
        if self.min_score is not None and (self.q is None or self.mode is Mode.KEYWORD):
            raise ValueError("min_score needs a query in semantic or hybrid mode")
        if self.facets is not None:
            parse_facet_names(self.facets)
        return self


class GarmentOut(BaseModel):
    """What every answer says about a garment; built from a row with ``from_row``."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    brand: str | None
    category: str | None
    size: str | None
    colour: str | None
    condition: str | None
    price: DecimalText
    currency: Currency
    image_url: str

    @classmethod
    def from_row(cls, row: object, image_url: str) -> Self:
        return cls.model_validate({**vars(row), "image_url": image_url})


class SearchHitOut(GarmentOut):
    score: Score = Field(description="Cosine similarity to the query, -1 to 1 (none when browsing)")
    relevance: Score = Field(default=None, description="The ranking score (fused rank in hybrid mode)")


class Interpreted(BaseModel):
    """What was read out of the query: the words searched, and the filters applied from it."""

    q: str = Field(description="The words left to search (empty when the query was all constraints)")
    filters: dict[str, str] = Field(
        description="Filters taken from the query, by parameter name (brand, colour, size, condition, "
        "price_min, price_max); values as strings, prices exact"
    )


class FacetValue(BaseModel):
    value: str
    count: int


class PriceBucket(BaseModel):
    min: str = Field(description="Inclusive lower bound, exact decimal")
    max: str | None = Field(description="Exclusive upper bound; none for the open-ended last bucket")
    count: int


class SearchPageOut(BaseModel):
    items: list[SearchHitOut]
    limit: int
    offset: int
    next_offset: int | None
    facets: dict[str, list[FacetValue] | list[PriceBucket]] | None = Field(
        default=None,
        description="Counts per value of each requested field; a field's counts ignore its own filter "
        "(disjunctive), price comes as buckets",
    )
    facets_scope: Literal["exact", "candidates"] | None = Field(
        default=None,
        description="exact: over the whole filtered catalog (browsing); candidates: over the ranked "
        "candidate set a query's pages are drawn from",
    )
    interpreted: Interpreted | None = Field(
        default=None, description="Present when constraints were taken out of q (see the parse parameter)"
    )
    search_id: str | None = Field(
        default=None,
        description="This search's random id: report clicks on its results with it (POST /api/events); "
        "none on similar-item pages",
    )


class StreamLineOut(SearchPageOut):
    """One line of the newline-delimited JSON stream; the last line has stage "final"."""

    MEDIA_TYPE: ClassVar[str] = "application/x-ndjson"
    stage: Literal["keyword", "final"]


class NoContent(BaseModel):
    """Done; there is nothing to return (204)."""

    NO_BODY: ClassVar[bool] = True


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


CORS_NOTE = (
    "Cross-origin use: the operations marked `x-cors: allow-listed` (search, its stream, photo "
    "search, an item, similar items, events) answer pages from the origins in "
    "PRETHRIFT_CORS_ORIGINS (in development, unset, any localhost, 127.0.0.1 or [::1] origin) with "
    "`Access-Control-Allow-Origin: <that origin>` and `Vary: Origin`, never with credentials. Their "
    f"preflight allows the one method asked for, the headers {ALLOWED_HEADERS}, and is cached for "
    f"{MAX_AGE_S} s; {EXPOSED_HEADERS} are readable. Every other operation (uploads, edits, deletes, "
    "the admin listing, webhooks) never answers another origin: its preflight is refused with 403 "
    "`cross_origin_refused`. The suggestion socket, WS /ws/suggest, refuses an upgrade whose Origin "
    "is neither this service nor on the list with 403 `origin_refused`; a handshake without Origin "
    "(no browser) is served."
)


class ApiDocument(OpenAPIProvider):
    """The OpenAPI document, with response media types other than JSON (or no body at all)
    where a model says so, and which operations answer other origins."""

    def schema(self) -> dict[str, Any]:
        document = super().schema()
        info = document["info"]
        info["description"] = (info.get("description", "") + "\n\n" + CORS_NOTE).strip()
        for method, rule in PUBLIC_ROUTES:
            path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)
            operation = document["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                operation["x-cors"] = "allow-listed"
        return document

    def build_response_object(self, model: Any, headers_model: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        response, definitions = super().build_response_object(model, headers_model)
        if getattr(model, "NO_BODY", False):
            response.pop("content", None)
            return response, definitions
        media_type = getattr(model, "MEDIA_TYPE", None)
        if media_type is not None:
            response["content"] = {media_type: response["content"]["application/json"]}
        return response, definitions
