"""The database holds a garment to the catalog's own lists of conditions and statuses."""

from __future__ import annotations

import re

import asyncpg
import pytest

from webapp.adapters.db import migrate
from webapp.catalog.garment import CONDITIONS, STATUSES


async def _checked_values(connection: asyncpg.Connection, constraint: str) -> set[str]:
    definition: str = await connection.fetchval(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1", constraint
    )
    return set(re.findall(r"'([^']*)'", definition))


async def _insert(connection: asyncpg.Connection, condition: str | None) -> int:
    item_id: int = await connection.fetchval(
        """INSERT INTO items (title, price, condition, image_key, image_sha256)
           VALUES ('Wool coat', 10, $1, 'k', md5(random()::text)) RETURNING id""",
        condition,
    )
    return item_id


async def test_the_database_checks_the_catalogs_lists(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        assert await _checked_values(connection, "items_condition_check") == set(CONDITIONS)
        assert await _checked_values(connection, "items_status_check") == set(STATUSES)
        for condition in CONDITIONS:
            await _insert(connection, condition)
        # The bench once wrote this spelling, which no API filter can match.
        with pytest.raises(asyncpg.CheckViolationError):
            await _insert(connection, "very good")
    finally:
        await connection.close()


async def test_rows_written_before_the_check_are_brought_into_the_list(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute("ALTER TABLE items DROP CONSTRAINT items_condition_check")
        await connection.execute("DELETE FROM schema_migrations WHERE version = 11")
        written = {
            "Like new": "like_new",
            "new with tags": "new_with_tags",
            "very good": "good",
            " fair ": "fair",
            "pristine": None,
        }
        ids = {spelling: await _insert(connection, spelling) for spelling in written}
        version = await connection.fetchval("SELECT version FROM catalog_state WHERE id = 1")

        assert await migrate(connection) == ["0011_catalog_checks.sql"]

        for spelling, item_id in ids.items():
            stored = await connection.fetchval("SELECT condition FROM items WHERE id = $1", item_id)
            assert stored == written[spelling], spelling
        assert await connection.fetchval("SELECT version FROM catalog_state WHERE id = 1") > version
        with pytest.raises(asyncpg.CheckViolationError):
            await _insert(connection, "pristine")
    finally:
        await connection.close()
