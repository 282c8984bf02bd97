"""Helpers for search tests: a catalog written straight into the real database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import services_of
from webapp.items.repo import bump_catalog_version


async def seed_items(app: Quart, rows: list[dict[str, Any]], seed: int = 7) -> list[int]:
    """Ready items with unit vectors of their own (the worker path is tested elsewhere)."""
    services = services_of(app)
    assert services.queries is not None
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(rows), services.queries.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    ids: list[int] = []
    async with services.pool.acquire() as connection, connection.transaction():
        for n, row in enumerate(rows):
            ids.append(
                await connection.fetchval(
                    """INSERT INTO items (title, brand, category, size, price, status, image_key, image_sha256,
                                          created_at)
                       VALUES ($1, $2, $3, $4, $5, 'ready', 'items/none.jpg', $6, $7) RETURNING id""",
                    row["title"],
                    row.get("brand"),
                    row.get("category"),
                    row.get("size"),
                    Decimal(str(row.get("price", "20.00"))),
                    f"seed-{seed}-{n}",
                    base + dt.timedelta(minutes=n),
                )  # fmt: skip
            )
        await connection.copy_records_to_table(
            "item_embeddings",
            records=[(i, services.model_key, v) for i, v in zip(ids, vectors, strict=True)],
            columns=["item_id", "model_key", "embedding"],
        )
        await bump_catalog_version(connection)
    return ids


async def search(client: QuartClient, **params: Any) -> dict[str, Any]:
    """GET /api/search, asserting a 200."""
    response = await client.get("/api/search", query_string={k: str(v) for k, v in params.items()})
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body
