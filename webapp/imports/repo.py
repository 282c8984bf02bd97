"""The import tables (migration 0015): fetched sources, imported listings, webhook deliveries and
the queue of imports webhooks asked for."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from webapp.imports.fetch import Validators


@dataclass(frozen=True)
class CachedSource:
    sha256: str
    validators: Validators


async def cached_sources(connection: asyncpg.Connection, sources: list[str]) -> dict[str, CachedSource]:
    rows = await connection.fetch(
        "SELECT source, sha256, etag, last_modified FROM import_sources WHERE source = ANY($1::text[])", sources
    )
    return {r["source"]: CachedSource(r["sha256"], Validators(r["etag"], r["last_modified"])) for r in rows}


async def record_source(
    connection: asyncpg.Connection, source: str, sha256: str, validators: Validators
) -> None:
    await connection.execute(
        """INSERT INTO import_sources (source, sha256, etag, last_modified) VALUES ($1, $2, $3, $4)
           ON CONFLICT (source) DO UPDATE SET sha256 = excluded.sha256, etag = excluded.etag,
               last_modified = excluded.last_modified, fetched_at = now()""",
        source, sha256, validators.etag, validators.last_modified,
    )  # fmt: skip


async def fingerprints(connection: asyncpg.Connection, external_ids: list[str]) -> dict[str, str]:
    rows = await connection.fetch(
        "SELECT external_id, fingerprint FROM import_listings WHERE external_id = ANY($1::text[])", external_ids
    )
    return {r["external_id"]: r["fingerprint"] for r in rows}


async def record_listing(
    connection: asyncpg.Connection, external_id: str, origin: str, fingerprint: str, product_id: int | None
) -> None:
    async with connection.transaction():
        if product_id is not None:  # a product's handle can change; its id never does
            await connection.execute(
                "UPDATE import_listings SET shopify_product_id = NULL WHERE shopify_product_id = $1 "
                "AND external_id <> $2",
                product_id, external_id,
            )  # fmt: skip
        await connection.execute(
            """INSERT INTO import_listings (external_id, origin, fingerprint, shopify_product_id)
               VALUES ($1, $2, $3, $4)
               ON CONFLICT (external_id) DO UPDATE SET origin = excluded.origin,
                   fingerprint = excluded.fingerprint, loaded_at = now(),
                   shopify_product_id = COALESCE(excluded.shopify_product_id,
                                                 import_listings.shopify_product_id)""",
            external_id, origin, fingerprint, product_id,
        )  # fmt: skip


async def remember_product(
    connection: asyncpg.Connection, external_id: str, product_id: int, updated_at: datetime | None
) -> bool:
    """Which listing a Shopify product id stands for, before its import has run; False (and
    nothing changed) when a delivery of a newer version of the product was taken already."""
    async with connection.transaction():
        newest = await connection.fetchval(
            "SELECT source_updated_at FROM import_listings WHERE external_id = $1 FOR UPDATE", external_id
        )
        if newest is not None and updated_at is not None and updated_at < newest:
            return False
        await connection.execute(
            "UPDATE import_listings SET shopify_product_id = NULL WHERE shopify_product_id = $1 "
            "AND external_id <> $2",
            product_id, external_id,
        )  # fmt: skip
        await connection.execute(
            """INSERT INTO import_listings
                   (external_id, origin, fingerprint, shopify_product_id, source_updated_at)
               VALUES ($1, 'shopify', '', $2, $3)
               ON CONFLICT (external_id) DO UPDATE SET shopify_product_id = excluded.shopify_product_id,
                   source_updated_at = COALESCE(excluded.source_updated_at,
                                                import_listings.source_updated_at)""",
            external_id, product_id, updated_at,
        )  # fmt: skip
    return True


async def listings_from(connection: asyncpg.Connection, origin: str) -> set[str]:
    rows = await connection.fetch("SELECT external_id FROM import_listings WHERE origin = $1", origin)
    return {r["external_id"] for r in rows}


async def forget_listing(connection: asyncpg.Connection, external_id: str) -> None:
    await connection.execute("DELETE FROM import_listings WHERE external_id = $1", external_id)


async def handle_of_product(connection: asyncpg.Connection, product_id: int) -> str | None:
    found: str | None = await connection.fetchval(
        "SELECT external_id FROM import_listings WHERE shopify_product_id = $1", product_id
    )
    return found


async def first_delivery(connection: asyncpg.Connection, sender: str, delivery_id: str, keep_s: int) -> bool:
    """Record a webhook delivery; False when it was seen before and has not expired."""
    recorded = await connection.fetchval(
        """INSERT INTO webhook_deliveries (sender, delivery_id, expires_at)
           VALUES ($1, $2, now() + make_interval(secs => $3))
           ON CONFLICT (sender, delivery_id) DO UPDATE SET expires_at = excluded.expires_at
               WHERE webhook_deliveries.expires_at < now()
           RETURNING true""",
        sender, delivery_id, float(keep_s),
    )  # fmt: skip
    # Expired ids go a few at a time, so the table stays the size of the window.
    await connection.execute(
        "DELETE FROM webhook_deliveries WHERE ctid IN "
        "(SELECT ctid FROM webhook_deliveries WHERE expires_at < now() LIMIT 100)"
    )
    return bool(recorded)


@dataclass(frozen=True)
class ImportJob:
    external_id: str
    action: str
    payload: dict[str, Any]
    version: int
    attempts: int


async def enqueue_import(
    connection: asyncpg.Connection, external_id: str, action: str, payload: dict[str, Any]
) -> None:
    """Queue an import; a newer one for the same listing replaces one not yet applied."""
    await connection.execute(
        """INSERT INTO import_jobs (external_id, action, payload) VALUES ($1, $2, $3::jsonb)
           ON CONFLICT (external_id) DO UPDATE SET action = excluded.action, payload = excluded.payload,
               version = import_jobs.version + 1, attempts = 0, not_before = now(), last_error = NULL""",
        external_id, action, json.dumps(payload),
    )  # fmt: skip


async def claim_imports(connection: asyncpg.Connection, limit: int, lease_s: float) -> list[ImportJob]:
    """Due imports, leased: a worker that dies holding one leaves it to be claimed again."""
    rows = await connection.fetch(
        """UPDATE import_jobs SET not_before = now() + make_interval(secs => $2), attempts = attempts + 1
           WHERE external_id IN (SELECT external_id FROM import_jobs WHERE not_before <= now()
                                 ORDER BY not_before LIMIT $1 FOR UPDATE SKIP LOCKED)
           RETURNING external_id, action, payload, version, attempts""",
        limit, lease_s,
    )  # fmt: skip
    return [ImportJob(r["external_id"], r["action"], json.loads(r["payload"]), r["version"], r["attempts"])
            for r in rows]  # fmt: skip


async def finish_import(connection: asyncpg.Connection, job: ImportJob) -> None:
    """Done: gone, unless a newer delivery replaced it meanwhile (then that one runs next)."""
    await connection.execute(
        "DELETE FROM import_jobs WHERE external_id = $1 AND version = $2", job.external_id, job.version
    )


async def retry_import(connection: asyncpg.Connection, job: ImportJob, error: str, after_s: float) -> None:
    await connection.execute(
        """UPDATE import_jobs SET last_error = $3, not_before = now() + make_interval(secs => $4)
           WHERE external_id = $1 AND version = $2""",
        job.external_id, job.version, error[:1000], after_s,
    )  # fmt: skip


async def pending_imports(connection: asyncpg.Connection) -> int:
    count: int = await connection.fetchval("SELECT count(*) FROM import_jobs")
    return count
