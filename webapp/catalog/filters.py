"""What a shopper can narrow a search by, and how results are ordered."""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from decimal import Decimal


class Mode(enum.StrEnum):
    SEMANTIC = "semantic"
    KEYWORD = "keyword"
    HYBRID = "hybrid"


class Sort(enum.StrEnum):
    RELEVANCE = "relevance"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    NEWEST = "newest"


@dataclass(frozen=True)
class SearchFilters:
    """Exact-match facets (case-insensitive) and an inclusive price range; None means any."""

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
        return tuple(str(getattr(self, f.name)) for f in fields(self))
