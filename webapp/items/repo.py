"""Catalog data access: small typed functions that take the connection first."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

import asyncpg

from webapp import jobs


@dataclass(frozen=True)
class NewItem:
    title: str
    price: Decimal
    currency: str = "USD"
    description: str = ""
    brand: str | None = None
    category: str | None = None
    size: str | None = None
    colour: str | None = None
    condition: str | None = None


@dataclass(frozen=True)
class Item:
    id: int
    title: str
    description: str
    brand: str | None
    category: str | None
    size: str | None
    colour: str | None
    condition: str | None
    price: Decimal
    currency: str
    status: str
    failure_reason: str | None
    image_key: str
    image_sha256: str
    created_at: dt.datetime
    updated_at: dt.datetime


_ITEM_COLUMNS = (
    "id, title, description, brand, category, size, colour, condition, price, currency, status, "
    "failure_reason, image_key, image_sha256, created_at, updated_at"
)


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
    """Record the item and its embedding jobs (one per registered model key, ``model_key`` when
    none is registered) atomically, and wake the workers on commit.

    Raises asyncpg.UniqueViolationError when a live item already has these image bytes.
    """
    async with connection.transaction():
        item_id: int = await connection.fetchval(
            """INSERT INTO items (title, description, brand, category, size, colour, condition,
                                  price, currency, image_key, image_sha256)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
               RETURNING id""",
            item.title,
            item.description,
            item.brand,
            item.category,
            item.size,
            item.colour,
            item.condition,
            item.price,
            item.currency,
            image_key,
            image_sha256,
        )
        await jobs.queue_for_new_item(connection, item_id, model_key)
    return item_id


async def delete_item(connection: asyncpg.Connection, item_id: int) -> bool:
    """Take an item out of the catalog and out of search; False when there was none."""
    async with connection.transaction():
        # Jobs first: a worker committing one finishes before we touch the item, so the
        # embedding it writes is seen and removed below (and no lock-order deadlock); a worker
        # that commits later finds its leased job gone and writes nothing.
        await jobs.delete_for_item(connection, item_id)
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
