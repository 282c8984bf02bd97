"""Facet counts: how many items each value of a field would leave, alongside a search.

Counts are disjunctive, as shoppers expect from Typesense, Algolia and Meilisearch: a field's
counts apply every filter but that field's own, so selecting "M" still shows how many "L"
there are. Browsing (no query) counts the filtered catalog exactly; a query counts the ranked
candidate set its pages are drawn from.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import asyncpg

from webapp.search.filters import SearchFilters
from webapp.search.repo import filter_sql

FIELDS = ("size", "brand", "colour", "condition", "category")
NAMES = (*FIELDS, "price")
# Price bucket edges (the last bucket is open-ended), in the catalog's currency.
PRICE_EDGES = (Decimal(0), Decimal(20), Decimal(40), Decimal(60), Decimal(100), Decimal(200))
# Values listed per field, most frequent first.
MAX_VALUES = 30


@dataclass(frozen=True)
class FacetCounts:
    """Counts per requested field; ``scope`` says whether they are exact or over candidates."""

    values: dict[str, list[dict[str, Any]]]
    scope: str

    def to_json(self) -> str:
        return json.dumps({"values": self.values, "scope": self.scope})

    @classmethod
    def from_json(cls, raw: bytes) -> FacetCounts:
        data = json.loads(raw)
        return cls(data["values"], data["scope"])


def parse_names(raw: str) -> tuple[str, ...]:
    """'size,brand' or 'all' -> the fields, in a fixed order; ValueError names what is unknown."""
    asked = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if asked == ["all"]:
        return NAMES
    unknown = sorted(set(asked) - set(NAMES))
    if unknown or not asked:
        raise ValueError(f"unknown facet {', '.join(unknown) or raw!r}; use any of {', '.join(NAMES)} or all")
    return tuple(name for name in NAMES if name in asked)


def _without(filters: SearchFilters, name: str) -> SearchFilters:
    if name == "price":
        return replace(filters, price_min=None, price_max=None)
    return replace(filters, **{name: None})


async def count_facets(
    connection: asyncpg.Connection,
    names: tuple[str, ...],
    filters: SearchFilters,
    candidates: list[int] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Disjunctive counts for ``names``: over the whole catalog, or over ``candidates`` when given."""
    counts: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        params: list[Any] = []
        where = filter_sql(_without(filters, name), params)
        if candidates is not None:
            params.append(candidates)
            where += f" AND i.id = ANY(${len(params)}::bigint[])"
        if name == "price":
            counts[name] = await _price_buckets(connection, where, params)
            continue
        column = "i.condition" if name == "condition" else f"lower(i.{name})"
        params.append(MAX_VALUES)
        rows = await connection.fetch(
            f"""SELECT min(i.{name}) AS value, count(*) AS count FROM items i
                WHERE {where} AND i.{name} IS NOT NULL
                GROUP BY {column} ORDER BY count DESC, value LIMIT ${len(params)}""",
            *params,
        )
        counts[name] = [{"value": r["value"], "count": r["count"]} for r in rows]
    return counts


async def _price_buckets(connection: asyncpg.Connection, where: str, params: list[Any]) -> list[dict[str, Any]]:
    edges = ", ".join(str(edge) for edge in PRICE_EDGES[1:])
    rows = await connection.fetch(
        f"""SELECT width_bucket(i.price, ARRAY[{edges}]::numeric[]) AS bucket, count(*) AS count
            FROM items i WHERE {where} GROUP BY bucket""",
        *params,
    )
    found = {r["bucket"]: r["count"] for r in rows}
    buckets = []
    for index, low in enumerate(PRICE_EDGES):
        high = PRICE_EDGES[index + 1] if index + 1 < len(PRICE_EDGES) else None
        if found.get(index):
            buckets.append({"min": str(low), "max": None if high is None else str(high), "count": found[index]})
    return buckets
