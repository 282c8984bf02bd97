"""What a listing can carry: the admin token, a photo of the wrong type, size or shape, fields
and numbers the database cannot hold, photo metadata; a refused listing changes nothing and
leaves no photo behind."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import boto3
import httpx
import pytest
from PIL import Image
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import (
    Served,
    image_file,
    listing,
    photo,
    services_of,
    upload,
)
from tests.webapp.helpers import AUTH, error_of, http_error, upload_over_http, wait_status
from webapp.config import Settings
from webapp.http.errors import register_error_handlers


async def catalog_counts(app: Quart) -> tuple[int, int]:
    async with services_of(app).pool.acquire() as connection:
        items = await connection.fetchval("SELECT count(*) FROM items")
        jobs = await connection.fetchval("SELECT count(*) FROM embedding_jobs")
    return items, jobs


async def test_upload_needs_the_admin_token(app: Quart, client: QuartClient) -> None:
    error = await error_of(await upload(client, photo(1), None), 401)
    assert "Bearer" in error["message"]
    await error_of(await upload(client, photo(1), {"Authorization": "Bearer wrong-token-xxxxxxxx"}), 403)
    await error_of(await upload(client, photo(1), {"Authorization": "Basic abc"}), 401)
    await error_of(await client.delete("/api/items/1"), 401)
    assert await catalog_counts(app) == (0, 0)


async def test_not_an_image_is_415_whatever_its_name(
    app: Quart, client: QuartClient, auth: dict[str, str]
) -> None:
    error = await error_of(await upload(client, b"%PDF-1.4 definitely not a photo", auth, "photo.jpg"), 415)
    assert "JPEG" in error["message"]
    bmp = io.BytesIO()
    Image.new("RGB", (20, 20), (1, 2, 3)).save(bmp, format="BMP")  # a real image, of a format we refuse
    error = await error_of(await upload(client, bmp.getvalue(), auth, "x.png"), 415)
    assert "BMP" in error["message"]
    assert await catalog_counts(app) == (0, 0)


async def test_content_is_sniffed_not_the_filename(client: QuartClient, auth: dict[str, str]) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 200, 30)).save(buffer, format="PNG")
    response = await upload(client, buffer.getvalue(), auth, "notes.txt")
    assert response.status_code == 202


async def test_truncated_image_is_422(app: Quart, client: QuartClient, auth: dict[str, str]) -> None:
    data = photo(3)
    error = await error_of(await upload(client, data[: len(data) // 2], auth), 422)
    assert error["code"] == "undecodable_image"
    await error_of(await upload(client, b"", auth), 422)
    assert await catalog_counts(app) == (0, 0)


async def test_oversized_image_is_413(app: Quart, client: QuartClient, auth: dict[str, str]) -> None:
    big = Image.effect_noise((1200, 1200), 90).convert("RGB")
    buffer = io.BytesIO()
    big.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > services_of(app).settings.storage.max_image_bytes
    error = await error_of(await upload(client, buffer.getvalue(), auth, "big.png"), 413)
    assert error["code"] == "payload_too_large"
    assert await catalog_counts(app) == (0, 0)


@pytest.mark.parametrize(
    "fields",
    [
        {"title": ""},
        {"price": "-1"},
        {"price": "abc"},
        {"price": "12.345"},
        {"price": "NaN"},
        {"currency": "dollars"},
        {"condition": "mint-ish"},
        {"title": "x" * 201},
        {"unexpected": "field"},
        {"title": "nul\x00byte"},
        {"brand": "bell\x07"},
    ],
)
async def test_invalid_fields_are_422(
    app: Quart, client: QuartClient, auth: dict[str, str], fields: dict[str, str]
) -> None:
    error = await error_of(await upload(client, photo(4), auth, **fields), 422)
    assert error["code"] == "invalid_parameters"
    assert await catalog_counts(app) == (0, 0)


async def test_missing_photo_is_422(app: Quart, client: QuartClient, auth: dict[str, str]) -> None:
    response = await client.post("/api/items", form=listing(), headers=auth)
    error = await error_of(response, 422)
    assert "image" in error["message"]
    assert await catalog_counts(app) == (0, 0)


async def test_photo_search_rejects_non_images(client: QuartClient) -> None:
    await error_of(await client.post("/api/search/image", files={"image": image_file(b"hello")}), 415)
    await error_of(await client.post("/api/search/image"), 422)
    await error_of(
        await client.post(
            "/api/search/image", query_string={"limit": "0"}, files={"image": image_file(photo(1))}
        ),
        422,
    )


async def _items_in_database(edge_server: Served) -> list[tuple[int, str, str]]:
    connection = await asyncpg.connect(edge_server.database_url)
    try:
        rows = await connection.fetch("SELECT id, price::text, status FROM items ORDER BY id")
    finally:
        await connection.close()
    return [(r["id"], r["price"], r["status"]) for r in rows]


OUT_OF_RANGE_PRICES = ["1E-20000", "0E-1000000", "1E+400", "0.001", "1000000.01", "12345678901234567890"]


async def test_numbers_the_database_cannot_hold_are_refused_and_change_nothing(edge_server: Served) -> None:
    async with httpx.AsyncClient(base_url=edge_server.base, timeout=30) as http:
        accepted = await upload_over_http(http, 301)
        assert accepted.status_code == 202, accepted.text
        item_id = accepted.json()["id"]
        await wait_status(http, item_id, "ready")
        before = await _items_in_database(edge_server)

        for price in OUT_OF_RANGE_PRICES:
            for name in ("price_max", "price_min"):
                http_error(await http.get("/api/search", params={name: price}), 422)
                http_error(await http.get("/api/items", params={name: price}, headers=AUTH), 422)
            http_error(await upload_over_http(http, 302, price=price), 422)
            http_error(await http.patch(f"/api/items/{item_id}", json={"price": price}, headers=AUTH), 422)
            http_error(
                await http.patch(
                    f"/api/items/{item_id}",
                    data={"price": price},
                    files={"image": ("new.jpg", photo(303), "image/jpeg")},
                    headers=AUTH,
                ),
                422,
            )
        for cursor in ("9223372036854775808", "9999999999999999999"):
            error = http_error(await http.get("/api/items", params={"cursor": cursor}, headers=AUTH), 422)
            assert "cursor" in error["message"]
        # What the column holds is still accepted, written in any notation.
        assert (
            await http.get("/api/search", params={"price_max": "1E+2", "price_min": "0.50"})
        ).status_code == 200
        changed = await http.patch(f"/api/items/{item_id}", json={"price": "1.5E+1"}, headers=AUTH)
        assert changed.status_code == 200 and changed.json()["price"] == "15.00", changed.text
        last = await http.get("/api/items", params={"cursor": str(2**63 - 1)}, headers=AUTH)
        assert last.status_code == 200

    after = await _items_in_database(edge_server)
    assert [(i, s) for i, _, s in after] == [(i, s) for i, _, s in before]  # nothing added or removed
    assert [p for i, p, _ in after if i == item_id] == ["15.00"]


async def test_a_driver_data_error_is_a_422_not_a_500(database_url: str) -> None:
    """Whatever value still slips past validation, PostgreSQL's refusal reaches the client as a
    422 with a message (here: a bigint parameter past 64 bits, refused by the real driver)."""
    app = Quart(__name__)
    register_error_handlers(app)

    @app.get("/probe/<int:value>")
    async def probe(value: int) -> dict[str, Any]:
        connection = await asyncpg.connect(database_url)
        try:
            return {"value": await connection.fetchval("SELECT $1::bigint", value)}
        finally:
            await connection.close()

    client = app.test_client()
    assert (await client.get("/probe/5")).status_code == 200
    response = await client.get("/probe/99999999999999999999")
    assert response.status_code == 422
    body = (await response.get_json())["error"]
    assert body["code"] == "invalid_value" and "store" in body["message"]


def _stored_keys(settings: Settings) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=settings.storage.endpoint_url, region_name="us-east-1")
    listed = s3.list_objects_v2(Bucket=settings.storage.bucket, Prefix="items/")
    return [entry["Key"] for entry in listed.get("Contents", [])]


@pytest.mark.parametrize(
    "trigger",
    [
        # The insert fails before anything is stored.
        "CREATE TRIGGER refuse BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION refuse()",
        # The commit fails after the photo was stored: the photo must go again.
        "CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON items DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION refuse()",
    ],
    ids=["insert", "commit"],
)
async def test_a_listing_the_database_refuses_leaves_no_photo_behind(
    app: Quart, client: QuartClient, auth: dict[str, str], settings: Settings, trigger: str
) -> None:
    async with services_of(app).pool.acquire() as connection:
        await connection.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$"
        )
        await connection.execute(trigger)
    failed = await upload(client, photo(7), auth)
    assert failed.status_code == 500, await failed.get_data(as_text=True)
    assert _stored_keys(settings) == []
    async with services_of(app).pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM items") == 0
        await connection.execute("DROP TRIGGER refuse ON items")
    # The same photo once the database takes it: stored once, under the key its item records.
    listed = await upload(client, photo(7), auth)
    assert listed.status_code == 202, await listed.get_data(as_text=True)
    async with services_of(app).pool.acquire() as connection:
        key = await connection.fetchval("SELECT image_key FROM items")
    assert _stored_keys(settings) == [key]
