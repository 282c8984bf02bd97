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
from webapp.catalog.sizes import accepted_keys, region_free, size_key

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
    # A field counted under no filter at all (none set, or only its own) is the whole catalog's
    # tally, kept as items change (migration 0017), instead of a pass over every item.
    whole = [name for name in names if not _without(filters, name).active]
    if whole:
        counts.update(await _tallied(connection, whole))
    # Fields without a filter of their own share one pass over the filtered set (GROUPING SETS);
    # a filtered field is counted under the other filters only.
    free = [name for name in names if not _filtered(filters, name) and name not in counts]
    if free:
        counts.update(await _grouped(connection, free, filters))
    for name in names:
        if name not in counts:
            counts.update(await _grouped(connection, [name], _without(filters, name)))
    return {name: counts[name] for name in names}


async def _tallied(connection: asyncpg.Connection, names: list[str]) -> dict[str, list[dict[str, Any]]]:
    rows = await connection.fetch(
        """SELECT field, value, sum(items) AS count FROM facet_tallies WHERE field = ANY($1::text[])
           GROUP BY field, value HAVING sum(items) > 0""",
        names,
    )
    written: dict[str, dict[Any, int]] = {name: {} for name in names}
    for row in rows:
        value = int(row["value"]) if row["field"] == "price" else row["value"]
        written[row["field"]][value] = int(row["count"])
    return {
        name: _buckets(written[name]) if name == "price" else _values(name, written[name]) for name in names
    }


async def compact_tallies(connection: asyncpg.Connection) -> int:
    """Fold the facet tallies into one row per value (the net of every change so far); returns
    the rows left. Rows added meanwhile are not in the fold's snapshot and stay as they are."""
    status: str = await connection.execute(
        """WITH gone AS (DELETE FROM facet_tallies RETURNING field, value, items)
           INSERT INTO facet_tallies (field, value, items)
           SELECT field, value, sum(items) FROM gone GROUP BY field, value HAVING sum(items) <> 0"""
    )
    return int(status.split()[-1])


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
    written: dict[str, dict[Any, int]] = {name: {} for name in names}
    for row in rows:
        n = row["grouped"].index(True)
        value = row[f"k{n}"]
        if value is None and names[n] != "price":
            continue
        written[names[n]][value] = written[names[n]].get(value, 0) + row["count"]
    counts: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        if name == "price":
            counts[name] = _buckets(written[name])
        else:
            counts[name] = _values(name, written[name])
    return counts


def _values(name: str, written: dict[Any, int]) -> list[dict[str, Any]]:
    """One value per thing counted, most frequent first: spellings of a name by case, sizes by key."""
    if name == "size":
        return _sizes(written)
    tally: dict[Any, list[Any]] = {}
    for value, count in written.items():
        key = value if name == "condition" else value.lower()
        entry = tally.setdefault(key, [value, 0])
        entry[0] = min(entry[0], value)
        entry[1] += count
    ordered = sorted(tally.values(), key=lambda e: (-e[1], e[0]))[:MAX_VALUES]
    return [{"value": value, "count": count} for value, count in ordered]


def _sizes(written: dict[str, int]) -> list[dict[str, Any]]:
    """Sizes by key ("10", "UK 10", "uk10" are one), shown as most items write them.

    A bare number joins the one region written with that number ("10" and "UK 10"), since a filter
    on either finds both; beside two regions (UK 10 and US 10 dresses) it stays a value of its own.
    """
    by_key: dict[str, dict[str, int]] = {}
    for value, count in written.items():
        key = size_key(value)
        if key is not None:
            spellings = by_key.setdefault(key, {})
            spellings[value] = spellings.get(value, 0) + count
    regions: dict[str, list[str]] = {}
    for key in by_key:
        if (number := region_free(key)) is not None:
            regions.setdefault(number, []).append(key)
    for number, keys in regions.items():
        if len(keys) == 1 and number in by_key:
            for value, count in by_key.pop(number).items():
                by_key[keys[0]][value] = by_key[keys[0]].get(value, 0) + count
    entries = [
        (min(spellings, key=lambda v: (-spellings[v], v)), sum(spellings.values()))
        for spellings in by_key.values()
    ]
    ordered = sorted(entries, key=lambda e: (-e[1], e[0]))[:MAX_VALUES]
    return [{"value": value, "count": count} for value, count in ordered]


async def _count_candidates(
    connection: asyncpg.Connection, names: tuple[str, ...], filters: SearchFilters, candidates: list[int]
) -> dict[str, list[dict[str, Any]]]:
    """A few hundred candidates: read their fields once and count here, per field."""
    params: list[Any] = [candidates]
    where = filter_sql(SearchFilters(), params)
    rows = await connection.fetch(
        f"""SELECT i.size, i.size_key, i.brand, i.colour, i.condition, i.category, i.price FROM items i
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
        found_values: dict[Any, int] = {}
        for row in kept:
            if row[name] is not None:
                found_values[row[name]] = found_values.get(row[name], 0) + 1
        counts[name] = _values(name, found_values)
    return counts


def _passes(row: asyncpg.Record, filters: SearchFilters) -> bool:
    """The same test as ``filter_sql``, on a row already read."""
    if filters.size is not None and row["size_key"] not in accepted_keys(filters.size):
        return False
    for name in FACET_FIELDS:
        wanted = getattr(filters, name)
        if wanted is None or name == "size":
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
