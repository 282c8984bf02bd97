"""Catalog data access: small typed functions that take the connection first."""

from __future__ import annotations

import datetime as dt
from dataclasses import astuple, dataclass, fields

import asyncpg

from webapp.catalog.garment import GARMENT_COLUMNS, Garment
from webapp.catalog.version import bump_catalog_version
from webapp.embedding import jobs
from webapp.items.photos import lock_gallery, photo_keys


@dataclass(frozen=True, kw_only=True)
class Item(Garment):
    """A stored listing: the seller's fields plus what the service keeps about it."""

    id: int
    external_id: str | None  # the shop's own id for the listing
    status: str
    failure_reason: str | None
    image_key: str  # the cover's (item_photos position 1)
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


async def select_by_external_id(connection: asyncpg.Connection, external_id: str) -> Item | None:
    """The live item a shop knows by ``external_id``, or None."""
    row = await connection.fetchrow(
        f"SELECT {_ITEM_COLUMNS} FROM items WHERE external_id = $1 AND status <> 'deleted'", external_id
    )
    return _item(row) if row else None


async def insert_item(connection: asyncpg.Connection, item: Garment, *, external_id: str | None = None) -> int:
    """Record a new item (call inside the transaction that then records its photos, which fill in
    its cover). Raises asyncpg.UniqueViolationError when a live item has ``external_id``."""
    values = astuple(item)
    item_id: int = await connection.fetchval(
        f"""INSERT INTO items ({", ".join(GARMENT_COLUMNS)}, external_id, image_key, image_sha256)
            VALUES ({", ".join(f"${n}" for n in range(1, len(values) + 2))}, '', '')
            RETURNING id""",
        *values,
        external_id,
    )
    return item_id


async def delete_item(connection: asyncpg.Connection, item_id: int) -> list[str] | None:
    """Take an item out of the catalog and out of search; returns its photos' keys (for the caller
    to delete the objects once this commits), None when there was no such item."""
    async with connection.transaction():
        await lock_gallery(connection, item_id)
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
            return None
        keys = await photo_keys(connection, item_id)
        # The photos' vectors go with them (ON DELETE CASCADE), and their hashes are free again.
        await connection.execute("DELETE FROM item_photos WHERE item_id = $1", item_id)
        await bump_catalog_version(connection)
    return keys


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
        if column not in GARMENT_COLUMNS and column != "external_id":
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
