"""Catalog data access: small typed functions that take the connection first."""

from __future__ import annotations

import datetime as dt
from dataclasses import astuple, dataclass, fields

import asyncpg

from webapp.catalog.garment import GARMENT_COLUMNS, Garment
from webapp.catalog.version import bump_catalog_version
from webapp.embedding import jobs


@dataclass(frozen=True, kw_only=True)
class Item(Garment):
    """A stored listing: the seller's fields plus what the service keeps about it."""

    id: int
    status: str
    failure_reason: str | None
    image_key: str
    image_sha256: str
    created_at: dt.datetime
    updated_at: dt.datetime


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
    item: Garment,
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
        values = astuple(item)
        item_id: int = await connection.fetchval(
            f"""INSERT INTO items ({", ".join(GARMENT_COLUMNS)}, image_key, image_sha256)
                VALUES ({", ".join(f"${n}" for n in range(1, len(values) + 3))})
                RETURNING id""",
            *values,
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


async def count_items(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM items WHERE status <> 'deleted'")
    return count


async def update_item(
    connection: asyncpg.Connection, item_id: int, changes: dict[str, object], sale_status: str | None
) -> Item | None:
    """Change a live item's fields and sale status, and bump the catalog version; None if absent.

    Reserved and sold items leave search at once (search reads only ready ones). Making one
    available again returns it to search if it has an embedding, else to the queue's outcome.
    """
    assignments: list[str] = []
    params: list[object] = [item_id]
    for column, value in changes.items():
        if column not in GARMENT_COLUMNS and column not in ("image_key", "image_sha256"):
            raise ValueError(f"not an item field: {column}")
        params.append(value)
        assignments.append(f"{column} = ${len(params)}")
    if sale_status in ("reserved", "sold"):
        params.append(sale_status)
        assignments.append(f"status = ${len(params)}")
    elif sale_status == "available":
        assignments.append(
            """status = CASE
                   WHEN status IN ('reserved', 'sold') AND EXISTS
                        (SELECT 1 FROM item_embeddings e WHERE e.item_id = items.id) THEN 'ready'
                   WHEN status IN ('reserved', 'sold') AND EXISTS
                        (SELECT 1 FROM embedding_jobs j WHERE j.item_id = items.id AND j.status = 'failed')
                        THEN 'failed'
                   WHEN status IN ('reserved', 'sold') THEN 'pending'
                   ELSE status END"""
        )
    assignments.append("updated_at = now()")
    async with connection.transaction():
        row = await connection.fetchrow(
            f"""UPDATE items SET {", ".join(assignments)} WHERE id = $1 AND status <> 'deleted'
                RETURNING {_ITEM_COLUMNS}""",
            *params,
        )
        if row is None:
            return None
        await bump_catalog_version(connection)
    return _item(row)


async def list_items(
    connection: asyncpg.Connection, where: str, params: list[object], *, before_id: int | None, limit: int
) -> list[Item]:
    """Live items passing ``where`` (conditions on ``items i``), newest first, ids below ``before_id``."""
    params = [*params, before_id or 2**63 - 1, limit]
    columns = ", ".join(f"i.{f.name}" for f in fields(Item))
    rows = await connection.fetch(
        f"""SELECT {columns} FROM items i
            WHERE {where} AND i.id < ${len(params) - 1}
            ORDER BY i.id DESC LIMIT ${len(params)}""",
        *params,
    )
    return [_item(r) for r in rows]
