"""Malformed parameters, ids, paths and methods: each a clear JSON error (never a 500), and
nothing in the catalog changes."""

from __future__ import annotations

import random
import string
from collections.abc import AsyncIterator

import pytest
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import wait_ready
from tests.webapp.helpers import error_of
from webapp.app import create_app
from webapp.config import Settings, StorageSettings
from webapp.embedding.embedder import ClipModel


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


@pytest.mark.parametrize("raw", ["%C2%B2", "%E2%91%A0", "%D9%A3", "%EF%BC%91", "1%00", "%00"])
async def test_ids_are_ascii_digits_only(client: QuartClient, raw: str) -> None:
    # ², ①, Arabic-Indic three, fullwidth one, and NUL bytes.
    error = await error_of(await client.get(f"/api/items/{raw}"), 400)
    assert error["code"] == "invalid_id"
    await error_of(await client.get(f"/api/items/{raw}/similar"), 400)


@pytest.fixture(name="local_app")
async def _local_app(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[Quart]:
    # Without a bucket the app serves photos itself from data_dir.
    app = create_app(settings.model_copy(update={"storage": StorageSettings()}), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        yield app


@pytest.mark.parametrize(
    "path", ["/images/%00", "/images/items/%00.jpg", "/images/%FF%FE", "/images/..%2F..%2Fetc"]
)
async def test_odd_bytes_in_image_paths_are_404(local_app: Quart, path: str) -> None:
    await error_of(await local_app.test_client().get(path), 404)


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/api/search", {"GET", "HEAD", "OPTIONS"}),
        ("PUT", "/api/items", {"GET", "HEAD", "POST", "OPTIONS"}),
        ("POST", "/healthz", {"GET", "HEAD", "OPTIONS"}),
    ],
)
async def test_405_says_what_is_allowed(client: QuartClient, method: str, path: str, allowed: set[str]) -> None:
    response = await client.open(path, method=method)
    await error_of(response, 405)
    assert allowed <= {m.strip() for m in response.headers["Allow"].split(",")}


KEYS = ["q", "limit", "offset", "mode", "sort", "min_score", "category", "size", "colour", "brand",
        "condition", "price_min", "price_max", "unknown"]  # fmt: skip


NASTY = ["", " ", "-1", "0", "1e309", "NaN", "inf", "9" * 40, "\x00", "a\x00b", "'; DROP TABLE items; --",
         "%", "_", "\\", "ü", "👗" * 50, "a" * 400, "<script>", "null", "[]", "{}", "1.5", "semantic",
         "price_asc"]  # fmt: skip


def fuzz_value(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return rng.choice(NASTY)
    alphabet = string.printable + "éß中👖\u200b"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


async def test_random_search_parameters_never_cause_a_500(client: QuartClient) -> None:
    rng = random.Random(20261126)
    statuses: set[int] = set()
    for _ in range(250):
        params = {rng.choice(KEYS): fuzz_value(rng) for _ in range(rng.randint(0, 5))}
        for path in ("/api/search", "/api/search/stream"):
            response = await client.get(path, query_string=params)
            assert response.status_code < 500, (path, params, await response.get_data(as_text=True))
            statuses.add(response.status_code)
    assert statuses >= {200, 422}


async def test_nul_bytes_and_odd_text_in_queries(client: QuartClient) -> None:
    for q in ("a\x00b", "\x00", "%_\\", "'; DROP TABLE items; --", "👗" * 20):
        for mode in ("hybrid", "keyword", "semantic"):
            response = await client.get("/api/search", query_string={"q": q, "mode": mode, "brand": q})
            assert response.status_code in (200, 422), (q, mode, await response.get_data(as_text=True))


async def test_random_ids_and_paths_never_cause_a_500(client: QuartClient) -> None:
    rng = random.Random(7)
    for _ in range(150):
        raw = fuzz_value(rng).replace("/", "").replace("?", "").replace("#", "") or "x"
        for path in (f"/api/items/{raw}", f"/api/items/{raw}/similar", f"/images/{raw}"):
            response = await client.get(path)
            assert response.status_code < 500, (path, await response.get_data(as_text=True))
