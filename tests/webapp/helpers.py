"""Helpers the webapp tests share (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import numpy as np
from quart import Quart
from quart.testing import QuartClient

from tests.conftest import ADMIN_TOKEN
from tests.webapp.conftest import photo, services_of
from webapp.catalog.version import bump_catalog_version
from webapp.config import Settings

# Screenshots the browser tests leave for a reviewer, at the repository root.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def prethrift(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webapp.cli", *args], env=env, capture_output=True, text=True, timeout=180
    )


async def items_in(settings: Settings) -> list[tuple[str, str]]:
    assert settings.database.url
    connection = await asyncpg.connect(settings.database.url.get_secret_value())
    try:
        rows = await connection.fetch("SELECT title, status FROM items ORDER BY id")
    finally:
        await connection.close()
    return [(r["title"], r["status"]) for r in rows]


async def seed_catalog(app: Quart, rows: list[dict[str, Any]], seed: int = 0) -> list[int]:
    """Insert ready items with random unit vectors directly (the worker path is tested elsewhere)."""
    services = services_of(app)
    assert services.queries is not None
    dim = services.queries.dim
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(len(rows), dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    async with services.pool.acquire() as connection, connection.transaction():
        ids: list[int] = []
        for n, row in enumerate(rows):
            item_id = await connection.fetchval(
                """INSERT INTO items (title, description, brand, category, size, colour, condition, price,
                                      status, image_key, image_sha256, created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'ready', 'items/none.jpg', $9, $10) RETURNING id""",
                row.get("title", f"Item {n}"),
                row.get("description", ""),
                row.get("brand"),
                row.get("category"),
                row.get("size"),
                row.get("colour"),
                row.get("condition"),
                Decimal(str(row.get("price", "10.00"))),
                f"seed-{seed}-{n}",
                base + dt.timedelta(minutes=n),
            )
            ids.append(item_id)
        await connection.copy_records_to_table(
            "item_embeddings",
            records=[(i, services.model_key, v) for i, v in zip(ids, vectors, strict=True)],
            columns=["item_id", "model_key", "embedding"],
        )
        await bump_catalog_version(connection)
    return ids


async def get(client: QuartClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/search", query_string={k: str(v) for k, v in params.items()})
    assert response.status_code == 200, await response.get_data(as_text=True)
    body: dict[str, Any] = await response.get_json()
    return body


async def error_of(response: Any, status: int) -> dict[str, str]:
    assert response.status_code == status, await response.get_data(as_text=True)
    body = await response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] and body["error"]["message"]
    error: dict[str, str] = body["error"]
    return error


# Over a real socket (httpx), as the edge-server tests speak to `prethrift serve`.
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def coat_listing(**fields: str) -> dict[str, str]:
    return {"title": "Wool coat", "category": "outerwear", "price": "40.00", "currency": "USD", **fields}


async def upload_over_http(http: httpx.AsyncClient, seed: int, **fields: str) -> httpx.Response:
    return await http.post(
        "/api/items",
        data=coat_listing(**fields),
        files={"image": ("coat.jpg", photo(seed), "image/jpeg")},
        headers=AUTH,
    )


def http_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] and body["message"]
    return body


async def wait_status(http: httpx.AsyncClient, item_id: int, status: str) -> None:
    for _ in range(300):
        if (await http.get(f"/api/items/{item_id}", headers=AUTH)).json()["status"] == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"item {item_id} never became {status}")
