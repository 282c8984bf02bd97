"""What a shopper can narrow a search by, and how results are ordered."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from webapp.catalog.sizes import accepted_keys


class Mode(enum.StrEnum):
    SEMANTIC = "semantic"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


class Sort(enum.StrEnum):
    RELEVANCE = "relevance"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    NEWEST = "newest"


# The fields a search can count results by (facets); price is counted in buckets.
FACET_FIELDS = ("size", "brand", "colour", "condition", "category")
FACET_NAMES = (*FACET_FIELDS, "price")


def parse_facet_names(raw: str) -> tuple[str, ...]:
    """'size,brand' or 'all' -> the fields, in a fixed order; ValueError names what is unknown."""
    asked = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if asked == ["all"]:
        return FACET_NAMES
    unknown = sorted(set(asked) - set(FACET_NAMES))
    if unknown or not asked:
        raise ValueError(
            f"unknown facet {', '.join(unknown) or raw!r}; use any of {', '.join(FACET_NAMES)} or all"
        )
    return tuple(name for name in FACET_NAMES if name in asked)


@dataclass(frozen=True)
class SearchFilters:
    """Exact-match facets (case-insensitive; sizes by key, however written: webapp.catalog.sizes) and an
    inclusive price range; None means any."""

    category: str | None = None
    size: str | None = None
    colour: str | None = None
    brand: str | None = None
    condition: str | None = None
    price_min: Decimal | None = None
    price_max: Decimal | None = None

    @property
    def active(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    def cache_key(self) -> tuple[object, ...]:
        # None stays None: a brand written "None" is a filter, not the absence of one.
        return tuple(None if (value := getattr(self, f.name)) is None else str(value) for f in fields(self))


def filter_sql(filters: SearchFilters, params: list[Any], *, status: str = "i.status = 'ready'") -> str:
    """SQL conditions on ``items i`` for the active filters; appends their parameters.

    Search sees only ready items; the seller's listing passes its own ``status`` condition.
    """
    clauses = [status]
    if filters.size is not None:
        # However the shop wrote the size (migration 0013 stores its key beside it).
        params.append(accepted_keys(filters.size))
        clauses.append(f"i.size_key = ANY(${len(params)}::text[])")
    for column in ("category", "colour", "brand"):
        value = getattr(filters, column)
        if value is not None:
            params.append(value.lower())
            clauses.append(f"lower(i.{column}) = ${len(params)}")
    if filters.condition is not None:
        params.append(filters.condition)
        clauses.append(f"i.condition = ${len(params)}")
    if filters.price_min is not None:
        params.append(filters.price_min)
        clauses.append(f"i.price >= ${len(params)}")
    if filters.price_max is not None:
        params.append(filters.price_max)
        clauses.append(f"i.price <= ${len(params)}")
    return " AND ".join(clauses)
