"""Bad input gets a clear JSON error with the right status, and changes nothing."""

from __future__ import annotations

import io
from typing import Any

import pytest
from PIL import Image
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import image_file, listing, photo, services_of, upload


async def error_of(response: Any, status: int) -> dict[str, str]:
    assert response.status_code == status, await response.get_data(as_text=True)
    body = await response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] and body["error"]["message"]
    error: dict[str, str] = body["error"]
    return error


async def catalog_counts(app: Quart) -> tuple[int, int]:
    async with services_of(app).pool.acquire() as connection:
        items = await connection.fetchval("SELECT count(*) FROM items")
        jobs = await connection.fetchval("SELECT count(*) FROM embedding_jobs")
    return items, jobs


@pytest.mark.parametrize(
    "params",
    [
        {"q": ""},
        {"q": "   "},
        {"q": "x" * 301},
        {"q": "coat", "limit": "-1"},
        {"q": "coat", "limit": "0"},
        {"q": "coat", "limit": "1000"},
        {"q": "coat", "limit": "ten"},
        {"q": "coat", "offset": "-5"},
        {"q": "coat", "offset": "1.5"},
        {"q": "coat", "mode": "fuzzy"},
        {"q": "coat", "sort": "cheapest"},
        {"q": "coat", "min_score": "2"},
        {"q": "coat", "mode": "keyword", "min_score": "0.2"},
        {"min_score": "0.2"},
        {"price_min": "50", "price_max": "10"},
        {"price_max": "-1"},
        {"condition": "mint"},
    ],
)
async def test_malformed_search_parameters(client: QuartClient, params: dict[str, str]) -> None:
    error = await error_of(await client.get("/api/search", query_string=params), 422)
    assert error["code"] == "invalid_parameters"


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "1.5", "99999999999999999999", "1e3"])
async def test_bad_item_ids(client: QuartClient, raw: str) -> None:
    error = await error_of(await client.get(f"/api/items/{raw}"), 400)
    assert error["code"] == "invalid_id"
    await error_of(await client.get(f"/api/items/{raw}/similar"), 400)


async def test_unknown_item_and_route(client: QuartClient) -> None:
    assert (await error_of(await client.get("/api/items/123456"), 404))["code"] == "not_found"
    await error_of(await client.get("/api/items/123456/similar"), 404)
    await error_of(await client.get("/api/nothing-here"), 404)
    await error_of(await client.put("/api/search"), 405)


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
