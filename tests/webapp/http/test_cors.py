"""Cross-origin rules: a shop's page may read the public search API and open the suggestion
socket; no other origin may, and no origin may reach the admin routes."""

from __future__ import annotations

import re

import pytest
from quart import Quart
from quart.testing import QuartClient
from quart.testing.connections import WebsocketResponseError

from tests.conftest import ADMIN_TOKEN
from webapp.config import Settings

SHOP = "https://shop.example"
STRANGER = "https://elsewhere.example"


@pytest.fixture(name="settings")
def _shop_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"cors_origins": (SHOP,)})


def preflight(method: str, origin: str, headers: str = "content-type") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


async def test_the_allowed_shop_reads_search_and_nobody_else_does(client: QuartClient) -> None:
    shop = await client.get("/api/search", query_string={"q": "denim"}, headers={"Origin": SHOP})
    assert shop.headers["Access-Control-Allow-Origin"] == SHOP
    assert "Origin" in shop.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in shop.headers
    stranger = await client.get("/api/search", query_string={"q": "denim"}, headers={"Origin": STRANGER})
    assert "Access-Control-Allow-Origin" not in stranger.headers
    # Caches keep the two apart even for a request without Origin.
    plain = await client.get("/api/search", query_string={"q": "denim"})
    assert "Origin" in plain.headers["Vary"]
    # Errors carry the header too, so the widget can show why (here, a bad parameter).
    bad = await client.get("/api/search", query_string={"limit": "0"}, headers={"Origin": SHOP})
    assert bad.status_code == 422
    assert bad.headers["Access-Control-Allow-Origin"] == SHOP


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/search"),
        ("GET", "/api/search/stream"),
        ("POST", "/api/search/image"),
        ("GET", "/api/items/1"),
        ("GET", "/api/items/1/similar"),
    ],
)
async def test_preflight_for_the_public_api(client: QuartClient, method: str, path: str) -> None:
    response = await client.options(path, headers=preflight(method, SHOP))
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == SHOP
    assert response.headers["Access-Control-Allow-Methods"] == method
    assert "content-type" in response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" not in response.headers["Access-Control-Allow-Headers"].lower()
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    refused = await client.options(path, headers=preflight(method, STRANGER))
    assert refused.status_code == 403
    assert "Access-Control-Allow-Origin" not in refused.headers


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/items"),
        ("GET", "/api/items"),
        ("PATCH", "/api/items/1"),
        ("DELETE", "/api/items/1"),
        ("PUT", "/api/items/external/shop-1"),
        ("POST", "/api/webhooks/shop"),
        ("GET", "/metrics"),
    ],
)
async def test_admin_routes_never_answer_another_origin(client: QuartClient, method: str, path: str) -> None:
    response = await client.options(path, headers=preflight(method, SHOP, "authorization"))
    assert response.status_code == 403
    assert (await response.get_json())["error"]["code"] == "cross_origin_refused"
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_admin_answers_carry_no_cors_headers(client: QuartClient) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Origin": SHOP}
    listed = await client.get("/api/items", headers=auth)
    assert listed.status_code == 200
    assert "Access-Control-Allow-Origin" not in listed.headers
    deleted = await client.delete("/api/items/999", headers=auth)
    assert deleted.status_code == 404
    assert "Access-Control-Allow-Origin" not in deleted.headers


async def test_suggestion_socket_checks_the_origin(app: Quart, client: QuartClient) -> None:
    with pytest.raises(WebsocketResponseError) as refused:
        async with client.websocket("/ws/suggest", headers={"Origin": STRANGER}) as ws:
            await ws.send('{"q": "den", "seq": 1}')
            await ws.receive()
    assert refused.value.response.status_code == 403
    assert (await refused.value.response.get_json())["error"]["code"] == "origin_refused"
    for headers in ({"Origin": SHOP}, {}, {"Origin": "http://localhost", "Host": "localhost"}):
        async with client.websocket("/ws/suggest", headers=headers) as ws:
            await ws.send('{"q": "den", "seq": 1}')
            answer = await ws.receive_json()
            assert answer["seq"] == 1, headers


def test_origins_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRETHRIFT_CORS_ORIGINS", "https://Shop.example:443, http://localhost:3000/")
    assert Settings().cors_origins == ("https://shop.example", "http://localhost:3000")
    for bad in ("*", "shop.example", "https://shop.example/path", "ftp://shop.example"):
        monkeypatch.setenv("PRETHRIFT_CORS_ORIGINS", bad)
        with pytest.raises(ValueError, match="not a web origin"):
            Settings()


async def test_openapi_says_which_operations_answer_other_origins(client: QuartClient) -> None:
    document = await (await client.get("/openapi.json")).get_json()
    assert "PRETHRIFT_CORS_ORIGINS" in document["info"]["description"]
    marked = {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation.get("x-cors") == "allow-listed"
    }
    assert {("GET", "/api/search"), ("POST", "/api/search/image"), ("GET", "/api/items/{raw_id}")} <= marked
    assert ("DELETE", "/api/items/{raw_id}") not in marked
    assert ("POST", "/api/items") not in marked


async def test_only_the_public_read_api_answers_another_origin(app: Quart, client: QuartClient) -> None:
    """Every route the app has, those added later included: only the listed ones pass a preflight."""
    public = {
        ("GET", "/api/search"),
        ("GET", "/api/search/stream"),
        ("POST", "/api/search/image"),
        ("GET", "/api/items/<raw_id>"),
        ("GET", "/api/items/<raw_id>/similar"),
        ("POST", "/api/events"),
    }
    seen = set()
    for rule in app.url_map.iter_rules():
        if rule.websocket:
            continue
        path = re.sub(r"<[^>]+>", "1", rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            response = await client.options(path, headers=preflight(method, SHOP))
            expected = 204 if (method, rule.rule) in public else 403
            assert response.status_code == expected, (method, rule.rule)
            seen.add((method, rule.rule))
    assert {("GET", "/api/search"), ("DELETE", "/api/items/<raw_id>"), ("POST", "/api/items")} <= seen
