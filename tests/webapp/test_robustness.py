"""No input produces a 500, and a service without its model says so instead of failing."""

from __future__ import annotations

import random
import string

from quart.testing import QuartClient

from webapp.app import create_app
from webapp.config import ClipSettings, Settings

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


async def test_without_a_model_the_service_is_alive_but_not_ready(settings: Settings) -> None:
    broken = settings.model_copy(
        update={"clip": ClipSettings(model="prethrift-tiny", pretrained="/nonexistent/weights.pt")}
    )
    app = create_app(broken)  # loads in the background, and fails
    async with app.test_app():
        client = app.test_client()
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "model" in (await ready.get_json())["error"]["message"]
        search = await client.get("/api/search", query_string={"q": "coat"})
        assert search.status_code == 503
        assert (await search.get_json())["error"]["code"] == "not_ready"
