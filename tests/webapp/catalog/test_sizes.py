"""Sizes however shops write them: one key per size, the same in Python and in the database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.conftest import scratch_database
from webapp.adapters.db import load_migrations, migrate
from webapp.catalog.sizes import accepted_keys, size_key

# Sizes as shops and shoppers write them, and oddities the rules must leave alone.
SPREAD = [
    "10", "UK 10", "uk10", "Size 10", "size: 10", "  Size   UK 10 ", "10 UK", "US 10", "us10", "EU 38",
    "eu38", "38", "10.5", "UK 7.5", "M", "m", "Medium", "med", "MED", "size m", "S", "Small", "sm",
    "L", "Large", "lrg", "XL", "X-Large", "Extra Large", "xlarge", "XXL", "2XL", "xxl", "3XL",
    "XXXL", "4XL", "XS", "x-small", "Extra small", "2XS", "One size", "one-size", "OS", "W32 L32",
    "32x32", "32/32", "W32/L32", "32W 32L", "w32l32", "32 x 32", "W32 L34", "w30", "30W", "W30",
    "10/12", "8-10", "40R", "110", "S/M", "M/L", "size", "", "   ", "UK 10 / EU 38", "Petite 8",
    "28/30", "12x30", "50/26", "51/30", "it 42", "fr40", "AU 12", "jp 9", "sizeable",
]  # fmt: skip


def test_one_key_per_size_however_written() -> None:
    assert {size_key(s) for s in ("10", "UK 10", "uk10", "Size 10")} == {"10", "uk 10"}
    assert size_key("UK 10") == size_key("uk10") == size_key("10 UK") == "uk 10"
    assert size_key("10") == size_key("Size 10") == "10"
    assert {size_key(s) for s in ("M", "Medium", "med", "size m")} == {"m"}
    assert {size_key(s) for s in ("W32 L32", "32x32", "32/32", "W32/L32", "32W 32L")} == {"w32 l32"}
    assert size_key("XXL") == size_key("2XL") == "xxl"
    assert size_key("One size") == size_key("OS") == "os"
    # Not jeans: a dress size range, and a region kept apart from another region's same number.
    assert size_key("10/12") == "10/12"
    assert size_key("US 10") != size_key("UK 10")
    assert size_key(None) is None and size_key("  ") is None
    # Unknown spellings still match themselves, case and spacing aside.
    assert size_key(" 40R ") == size_key("40r") == "40r"


def test_a_bare_number_and_a_region_qualified_one_match_each_other() -> None:
    assert set(accepted_keys("UK 10")) == {"uk 10", "10"}
    assert {"10", "uk 10", "us 10"} <= set(accepted_keys("10"))
    assert "us 10" not in accepted_keys("UK 10")
    assert accepted_keys("M") == ["m"] and accepted_keys("W32 L32") == ["w32 l32"]


async def test_the_database_keys_sizes_as_the_python_rules_do(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch("SELECT s, catalog_size_key(s) AS key FROM unnest($1::text[]) s", SPREAD)
    finally:
        await connection.close()
    assert [(r["s"], r["key"]) for r in rows] == [(s, size_key(s)) for s in SPREAD]


@pytest.fixture(name="previous_schema")
async def _previous_schema(postgres_dsn: str) -> AsyncIterator[str]:
    async with scratch_database(postgres_dsn, "sz_") as url:
        yield url


async def test_the_migration_keys_every_existing_item(previous_schema: str) -> None:
    connection = await asyncpg.connect(previous_schema)
    try:
        # The schema before sizes had keys, with items in it.
        await connection.execute(
            """CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        for migration in load_migrations():
            if migration.version < 13:
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
        sizes = [s for s in SPREAD if s.strip()] + [None]
        await connection.executemany(
            """INSERT INTO items (title, size, price, image_key, image_sha256)
               VALUES ('Item', $1, 10, 'items/x.jpg', $2)""",
            [(s, f"sha-{n}") for n, s in enumerate(sizes)],
        )
        assert "0013_size_key.sql" in await migrate(connection)
        rows = await connection.fetch("SELECT size, size_key FROM items ORDER BY id")
        assert [(r["size"], r["size_key"]) for r in rows] == [(s, size_key(s)) for s in sizes]
        # A later write keeps the key in step, whoever writes it.
        await connection.execute("UPDATE items SET size = 'Medium' WHERE size = 'M'")
        assert await connection.fetchval("SELECT size_key FROM items WHERE size = 'Medium'") == "m"
    finally:
        await connection.close()
