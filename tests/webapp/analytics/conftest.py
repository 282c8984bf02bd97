"""Helpers for the search log's tests: a small ready catalog, and searches run through the API."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
from quart import Quart
from quart.testing import QuartClient
from quart.typing import TestClientProtocol

from tests.webapp.conftest import services_of
from webapp.catalog.version import bump_catalog_version
from webapp.search.repo import loaded_queries


async def seed_ready_items(app: Quart, rows: list[dict[str, str]]) -> list[int]:
    """Insert ready items with random unit vectors directly (the worker path is tested elsewhere)."""
    services = services_of(app)
    queries = loaded_queries(services)
    assert queries is not None
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(rows), queries.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    async with services.pool.acquire() as connection, connection.transaction():
        ids: list[int] = []
        for n, row in enumerate(rows):
            item_id = await connection.fetchval(
                """INSERT INTO items (title, description, brand, category, size, colour, price, status,
                                      image_key, image_sha256)
                   VALUES ($1, '', $2, $3, $4, $5, $6, 'ready', 'items/none.jpg', $7) RETURNING id""",
                row["title"],
                row.get("brand"),
                row.get("category"),
                row.get("size"),
                row.get("colour"),
                Decimal(row.get("price", "30.00")),
                f"analytics-{n}",
            )
            ids.append(item_id)
        await connection.copy_records_to_table(
            "item_embeddings",
            records=[(i, services.model_key, v) for i, v in zip(ids, vectors, strict=True)],
            columns=["item_id", "model_key", "embedding"],
        )
        await bump_catalog_version(connection)
    return ids


async def search(client: QuartClient | TestClientProtocol, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/search", query_string={k: str(v) for k, v in params.items()})
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def click(
    client: QuartClient | TestClientProtocol, search_id: str, item_id: int, position: int, session: str
) -> None:
    response = await client.post(
        "/api/events",
        json={"type": "click", "search_id": search_id, "item_id": item_id, "position": position,
              "session_id": session},
    )  # fmt: skip
    assert response.status_code == 202, await response.get_data(as_text=True)


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()
