"""Whole-catalog facet counts come from tallies kept as items change; they match a count of the items."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from webapp.catalog.filters import FACET_NAMES, SearchFilters
from webapp.search.facets import PRICE_EDGES, _grouped, compact_tallies, count_facets

ROWS = [
    # title, category, size, brand, colour, condition, price, status
    ("Midi dress", "dresses", "M", "Zara", "red", "good", "19.99", "ready"),
    ("Slip dress", "Dresses", "10", "zara", "Red", "like_new", "20.00", "ready"),
    ("Wrap dress", "dresses", "UK 10", "COS", "black", "good", "45.00", "pending"),
    ("Denim jacket", "jackets", "M", "Levi's", "blue", "fair", "60.00", "ready"),
    ("Trench coat", "coats", None, "Burberry", "beige", "new_with_tags", "250.00", "ready"),
    ("Wool coat", "coats", "L", None, None, "good", "99.99", "ready"),
]


async def _insert(connection: asyncpg.Connection, rows: list[tuple[Any, ...]], batch: str = "a") -> list[int]:
    ids = []
    for n, (title, category, size, brand, colour, condition, price, status) in enumerate(rows):
        ids.append(
            await connection.fetchval(
                """INSERT INTO items (title, category, size, brand, colour, condition, price, status,
                                      image_key, image_sha256)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'items/none.jpg', $9) RETURNING id""",
                title,
                category,
                size,
                brand,
                colour,
                condition,
                Decimal(price),
                status,
                f"tally-{batch}-{n}",
            )  # fmt: skip
        )
    return ids


async def _assert_tallies_count_the_items(connection: asyncpg.Connection) -> None:
    tallied = await count_facets(connection, FACET_NAMES, SearchFilters())
    counted = await _grouped(connection, list(FACET_NAMES), SearchFilters())
    assert tallied == counted


async def test_tallies_follow_inserts_edits_sales_deletes_and_truncation(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        ids = await _insert(connection, ROWS)
        await _assert_tallies_count_the_items(connection)
        counts = await count_facets(connection, ("category", "colour", "price"), SearchFilters())
        # Spellings of one value are one value; a pending item is not counted.
        assert {c["value"]: c["count"] for c in counts["category"]} == {"Dresses": 2, "coats": 2, "jackets": 1}
        assert {c["value"]: c["count"] for c in counts["colour"]} == {"Red": 2, "blue": 1, "beige": 1}
        assert [(b["min"], b["count"]) for b in counts["price"]] == [
            ("0", 1), ("20", 1), ("60", 2), ("200", 1)
        ]  # fmt: skip

        async with connection.transaction():  # several statements in one transaction
            await connection.execute("UPDATE items SET status = 'ready' WHERE id = $1", ids[2])
            await connection.execute("UPDATE items SET status = 'sold' WHERE id = $1", ids[0])
            await connection.execute(
                "UPDATE items SET category = 'outerwear', price = 30 WHERE id = $1", ids[3]
            )
            await connection.execute(
                "UPDATE items SET title = 'Renamed' WHERE id = $1", ids[4]
            )  # moves nothing
        await connection.execute("DELETE FROM items WHERE id = $1", ids[5])
        await _insert(connection, ROWS[:2], batch="b")
        await _assert_tallies_count_the_items(connection)
        # A filter counts its own field over the whole catalog (the tallies) and the others under it.
        dresses = SearchFilters(category="dresses")
        assert await count_facets(connection, FACET_NAMES, dresses) == {
            "category": (await _grouped(connection, ["category"], SearchFilters()))["category"],
            **(await _grouped(connection, [n for n in FACET_NAMES if n != "category"], dresses)),
        }

        before = await connection.fetchval("SELECT count(*) FROM facet_tallies")
        left = await compact_tallies(connection)
        assert left == await connection.fetchval("SELECT count(*) FROM facet_tallies") < before
        await _assert_tallies_count_the_items(connection)

        await connection.execute("TRUNCATE items CASCADE")
        assert await count_facets(connection, ("brand", "price"), SearchFilters()) == {"brand": [], "price": []}
    finally:
        await connection.close()


async def test_the_tallies_price_buckets_are_the_facets(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        for edge in PRICE_EDGES:
            for price in (edge, edge + Decimal("0.01"), max(Decimal(0), edge - Decimal("0.01"))):
                bucket = await connection.fetchval(
                    "SELECT value FROM facet_values('ready', NULL, NULL, NULL, NULL, NULL, $1) "
                    "WHERE field = 'price'",
                    price,
                )
                assert int(bucket) == sum(1 for e in PRICE_EDGES[1:] if price >= e), price
    finally:
        await connection.close()
