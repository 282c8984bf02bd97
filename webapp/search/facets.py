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

from webapp.catalog.filters import FACET_FIELDS, SearchFilters, filter_sql

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
    if candidates is not None:
        return await _count_candidates(connection, names, filters, candidates)
    counts: dict[str, list[dict[str, Any]]] = {}
    # Fields without a filter of their own share one pass over the filtered set (GROUPING SETS);
    # a filtered field is counted under the other filters only.
    free = [name for name in names if not _filtered(filters, name)]
    if free:
        counts.update(await _grouped(connection, free, filters))
    for name in names:
        if name not in free:
            counts.update(await _grouped(connection, [name], _without(filters, name)))
    return {name: counts[name] for name in names}


def _filtered(filters: SearchFilters, name: str) -> bool:
    if name == "price":
        return filters.price_min is not None or filters.price_max is not None
    return getattr(filters, name) is not None


def _group_key(name: str) -> str:
    if name == "price":
        return f"width_bucket(i.price, ARRAY[{', '.join(str(e) for e in PRICE_EDGES[1:])}]::numeric[])"
    # Raw values group about twice as fast as lower(); spellings are merged below.
    return f"i.{name}"


async def _grouped(
    connection: asyncpg.Connection, names: list[str], filters: SearchFilters
) -> dict[str, list[dict[str, Any]]]:
    params: list[Any] = []
    where = filter_sql(filters, params)
    keys = [_group_key(name) for name in names]
    which = ", ".join(f"GROUPING({key}) = 0" for key in keys)
    columns = ", ".join(f"{key} AS k{n}" for n, key in enumerate(keys))
    rows = await connection.fetch(
        f"""SELECT {columns}, ARRAY[{which}] AS grouped, count(*) AS count
            FROM items i WHERE {where}
            GROUP BY GROUPING SETS ({", ".join(f"({key})" for key in keys)})""",
        *params,
    )
    tallies: dict[str, dict[Any, list[Any]]] = {name: {} for name in names}
    for row in rows:
        n = row["grouped"].index(True)
        value = row[f"k{n}"]
        if value is None and names[n] != "price":
            continue
        key = value.lower() if isinstance(value, str) and names[n] != "condition" else value
        entry = tallies[names[n]].setdefault(key, [value, 0])
        entry[0] = min(entry[0], value)
        entry[1] += row["count"]
    counts: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        if name == "price":
            counts[name] = _buckets({bucket: entry[1] for bucket, entry in tallies[name].items()})
        else:
            ordered = sorted(tallies[name].values(), key=lambda e: (-e[1], e[0]))[:MAX_VALUES]
            counts[name] = [{"value": value, "count": count} for value, count in ordered]
    return counts


async def _count_candidates(
    connection: asyncpg.Connection, names: tuple[str, ...], filters: SearchFilters, candidates: list[int]
) -> dict[str, list[dict[str, Any]]]:
    """A few hundred candidates: read their fields once and count here, per field."""
    params: list[Any] = [candidates]
    where = filter_sql(SearchFilters(), params)
    rows = await connection.fetch(
        f"""SELECT i.size, i.brand, i.colour, i.condition, i.category, i.price FROM items i
            WHERE i.id = ANY($1::bigint[]) AND {where}""",
        *params,
    )
    counts: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        others = _without(filters, name)
        kept = [row for row in rows if _passes(row, others)]
        if name == "price":
            found: dict[int, int] = {}
            for row in kept:
                bucket = sum(1 for edge in PRICE_EDGES[1:] if row["price"] >= edge)
                found[bucket] = found.get(bucket, 0) + 1
            counts[name] = _buckets(found)
            continue
        tally: dict[str, list[Any]] = {}
        for row in kept:
            value = row[name]
            if value is not None:
                key = value if name == "condition" else value.lower()
                entry = tally.setdefault(key, [value, 0])
                entry[0] = min(entry[0], value)
                entry[1] += 1
        ordered = sorted(tally.values(), key=lambda e: (-e[1], e[0]))[:MAX_VALUES]
        counts[name] = [{"value": value, "count": count} for value, count in ordered]
    return counts


def _passes(row: asyncpg.Record, filters: SearchFilters) -> bool:
    """The same test as ``filter_sql``, on a row already read."""
    for name in FACET_FIELDS:
        wanted = getattr(filters, name)
        if wanted is None:
            continue
        value = row[name]
        if value is None or (value != wanted if name == "condition" else value.lower() != wanted.lower()):
            return False
    if filters.price_min is not None and row["price"] < filters.price_min:
        return False
    return filters.price_max is None or row["price"] <= filters.price_max


def _buckets(found: dict[int, int]) -> list[dict[str, Any]]:
    buckets = []
    for index, low in enumerate(PRICE_EDGES):
        high = PRICE_EDGES[index + 1] if index + 1 < len(PRICE_EDGES) else None
        if found.get(index):
            buckets.append({"min": str(low), "max": None if high is None else str(high), "count": found[index]})
    return buckets
