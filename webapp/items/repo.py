"""Catalog data access: small typed functions that take the connection first."""

from __future__ import annotations

import datetime as dt
from dataclasses import astuple, dataclass, fields
from decimal import Decimal

import asyncpg

# pg_notify channel the embedding worker listens on.
JOBS_CHANNEL = "embedding_jobs"


@dataclass(frozen=True, kw_only=True)
class NewItem:
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


@dataclass(frozen=True, kw_only=True)
class Item(NewItem):
    """A stored listing: the seller's fields plus what the service keeps about it."""

    id: int
    status: str
    failure_reason: str | None
    image_key: str
    image_sha256: str
    created_at: dt.datetime
    updated_at: dt.datetime


GARMENT_COLUMNS = tuple(f.name for f in fields(NewItem))
_ITEM_COLUMNS = ", ".join(f.name for f in fields(Item))


def _item(row: asyncpg.Record) -> Item:
    return Item(**dict(row))


async def select_item(connection: asyncpg.Connection, item_id: int) -> Item | None:
    """A live (not deleted) item, or None."""
    row = await connection.fetchrow(
        f"SELECT {_ITEM_COLUMNS} FROM items WHERE id = $1 AND status <> 'deleted'", item_id
    )
    return _item(row) if row else None


async def select_live_by_image(connection: asyncpg.Connection, sha256: str) -> int | None:
    item_id: int | None = await connection.fetchval(
        "SELECT id FROM items WHERE image_sha256 = $1 AND status <> 'deleted'", sha256
    )
    return item_id


async def insert_item_with_job(
    connection: asyncpg.Connection,
    item: NewItem,
    *,
    image_key: str,
    image_sha256: str,
    model_key: str,
) -> int:
    """Record the item and its embedding job atomically, and wake the worker on commit.

    Raises asyncpg.UniqueViolationError when a live item already has these image bytes.
    """
    async with connection.transaction():
        values = astuple(item)
        item_id: int = await connection.fetchval(
            f"""INSERT INTO items ({", ".join(GARMENT_COLUMNS)}, image_key, image_sha256)
                VALUES ({", ".join(f"${n}" for n in range(1, len(values) + 3))})
                RETURNING id""",
            *values,
            image_key,
            image_sha256,
        )
        await connection.execute(
            "INSERT INTO embedding_jobs (item_id, model_key) VALUES ($1, $2)", item_id, model_key
        )
        await connection.execute("SELECT pg_notify($1, $2)", JOBS_CHANNEL, model_key)
    return item_id


async def delete_item(connection: asyncpg.Connection, item_id: int) -> bool:
    """Take an item out of the catalog and out of search; False when there was none."""
    async with connection.transaction():
        # Jobs first: a worker holding one finishes before we touch the item, so the
        # embedding it writes is seen and removed below (and no lock-order deadlock).
        await connection.execute("DELETE FROM embedding_jobs WHERE item_id = $1", item_id)
        status = await connection.fetchval(
            """UPDATE items SET status = 'deleted', updated_at = now()
               WHERE id = $1 AND status <> 'deleted' RETURNING status""",
            item_id,
        )
        if status is None:
            return False
        await connection.execute("DELETE FROM item_embeddings WHERE item_id = $1", item_id)
        await bump_catalog_version(connection)
    return True


async def bump_catalog_version(connection: asyncpg.Connection) -> None:
    await connection.execute("UPDATE catalog_state SET version = version + 1 WHERE id = 1")


async def catalog_version(connection: asyncpg.Connection) -> int:
    version: int = await connection.fetchval("SELECT version FROM catalog_state WHERE id = 1")
    return version


async def count_items(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM items WHERE status <> 'deleted'")
    return count
