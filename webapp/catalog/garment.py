"""A garment as the catalog knows it: the fields a seller writes, the conditions it can be in,
and the statuses a listing passes through. The database checks the same lists (migrations
0004 and 0011); the API, the query reader, the demo catalog and the bench take them from here."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Literal, get_args

Condition = Literal["new_with_tags", "like_new", "good", "fair", "worn"]
CONDITIONS: tuple[Condition, ...] = get_args(Condition)

# Pending until its photo is embedded, then ready (searchable) or failed; reserved and sold are
# the seller's, and out of search.
ListedStatus = Literal["pending", "ready", "failed", "reserved", "sold"]
# A deleted item keeps its row (its photo's key, its history) but is gone from every answer.
ItemStatus = Literal[ListedStatus, "deleted"]
STATUSES: tuple[ItemStatus, ...] = get_args(ItemStatus)
# What a seller may set; "available" is stored as the status the item had before it was sold.
SaleStatus = Literal["available", "reserved", "sold"]
SALE_STATUSES: tuple[SaleStatus, ...] = get_args(SaleStatus)


@dataclass(frozen=True, kw_only=True)
class Garment:
    """The fields a seller writes: the one row-level definition of a garment."""

    title: str
    price: Decimal
    currency: str = "USD"
    description: str = ""
    brand: str | None = None
    category: str | None = None
    size: str | None = None
    colour: str | None = None
    condition: str | None = None


GARMENT_COLUMNS = tuple(f.name for f in fields(Garment))
