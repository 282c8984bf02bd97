"""What the edge shows and speaks: security headers, the documented errors, no cleartext HTTP/2,
metrics only to loopback, only what search shows to a public reader, and a service without its
model alive but not ready."""

from __future__ import annotations

import asyncio
import json
import socket

import asyncpg
import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import Served
from tests.webapp.helpers import AUTH, http_error, upload_over_http, wait_status
from webapp.app import create_app
from webapp.config import (
    ClipSettings,
    Settings,
)


async def test_security_headers(client: QuartClient) -> None:
    page = await client.get("/")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy
    body = await page.get_data(as_text=True)
    assert "<script>" not in body and "<script src=" in body  # no inline script to allow
    for response in (page, await client.get("/api/search", query_string={"q": "x"}), await client.get("/nope")):
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert "frame-ancestors 'none'" in response.headers["Content-Security-Policy"]


def test_openapi_declares_the_bearer_scheme_and_error_responses(app: Quart) -> None:
    spec = app.test_client()
    del spec  # the document is built from the app without a request
    document = json.loads(json.dumps(app.extensions["QUART_SCHEMA"].openapi_provider.schema()))
    operations = {
        (method.upper(), path): op for path, item in document["paths"].items() for method, op in item.items()
    }
    for key in (("POST", "/api/items"), ("DELETE", "/api/items/{raw_id}")):
        assert operations[key]["security"] == [{"bearer": []}], key
        assert {"401", "403"} <= set(operations[key]["responses"])
    assert "security" not in operations[("GET", "/api/search")]
    assert "content" not in operations[("DELETE", "/api/items/{raw_id}")]["responses"]["204"]
    assert "application/x-ndjson" in operations[("GET", "/api/search/stream")]["responses"]["200"]["content"]
    expected = {
        ("GET", "/api/search"): {"422", "429", "503"},
        ("POST", "/api/search/image"): {"413", "415", "422", "429", "503"},
        ("POST", "/api/items"): {"401", "403", "409", "413", "415", "422", "429", "503"},
        ("GET", "/api/items/{raw_id}"): {"400", "404"},
        ("GET", "/api/items/{raw_id}/similar"): {"400", "404", "422", "503"},
    }
    for key, codes in expected.items():
        responses = operations[key]["responses"]
        assert codes <= set(responses), (key, sorted(responses))
        for code in codes:
            schema = responses[code]["content"]["application/json"]["schema"]
            named = schema.get("title") or schema.get("$ref", "").rsplit("/", 1)[-1]
            assert named == "ErrorOut", (key, code, schema)


# A client behind the one trusted proxy (the test speaks as that proxy).
OUTSIDER = {"X-Forwarded-For": "203.0.113.7"}


def _h2_prior_knowledge(edge_server: Served) -> list[h2.events.Event]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(
        1,
        [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", "localhost")],
        end_stream=True,
    )
    events: list[h2.events.Event] = []
    with socket.create_connection((edge_server.host, edge_server.port), timeout=5) as sock:
        sock.sendall(client.data_to_send())
        while chunk := sock.recv(65536):
            events += client.receive_data(chunk)
    return events


async def test_cleartext_http2_is_refused(edge_server: Served) -> None:
    events = await asyncio.to_thread(_h2_prior_knowledge, edge_server)
    assert not [e for e in events if isinstance(e, h2.events.ResponseReceived)], events
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended and ended[0].error_code == h2.errors.ErrorCodes.HTTP_1_1_REQUIRED, events
    # An upgrade to h2c is ignored: the request is answered in HTTP/1.1.
    upgrade = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAAQAAP__"}
    async with httpx.AsyncClient(base_url=edge_server.base) as http:
        response = await http.get("/healthz", headers=upgrade)
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    assert response.json() == {"status": "alive"}


SPELLINGS = ["/metrics", "//metrics", "/%6detrics", "/%6Detrics", "/./metrics", "/static/../metrics"]


async def test_metrics_are_served_only_to_loopback(edge_server: Served) -> None:
    async with httpx.AsyncClient(base_url=edge_server.base) as http:
        # The collector beside the service, on loopback and not through the load balancer.
        local = await http.get("/metrics")
        assert local.status_code == 200 and "prethrift_request_seconds" in local.text
        for path in SPELLINGS:
            raw = httpx.URL(edge_server.base + "/").copy_with(raw_path=path.encode())
            response = await http.get(raw, headers=OUTSIDER)
            assert response.status_code in (308, 400, 404), (path, response.status_code)
            assert "prethrift_" not in response.text, path
            if response.status_code == 308:
                # A redirect to the one spelling is refused there too.
                location = response.headers["location"]
                followed = await http.get(location, headers=OUTSIDER)
                assert followed.status_code == 404 and "prethrift_" not in followed.text, location


async def test_metrics_check_the_socket_peer(app: Quart) -> None:
    client = app.test_client()
    for peer in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        inside = await client.get("/metrics", scope_base={"client": (peer, 40000)})
        assert inside.status_code == 200, peer
    for peer in ("10.0.3.17", "203.0.113.9", "::ffff:203.0.113.9"):
        outside = await client.get("/metrics", scope_base={"client": (peer, 40000)})
        assert outside.status_code == 404
        assert "prethrift_" not in (await outside.get_data(as_text=True))
    # A header cannot make an outside peer local.
    spoofed = await client.get(
        "/metrics", scope_base={"client": ("203.0.113.9", 40000)}, headers={"X-Forwarded-For": "127.0.0.1"}
    )
    assert spoofed.status_code == 404


async def test_a_public_reader_sees_only_what_search_shows(edge_server: Served) -> None:
    async with httpx.AsyncClient(base_url=edge_server.base, timeout=30) as http:
        ids = [
            (await upload_over_http(http, seed, title=f"Coat {seed}")).json()["id"]
            for seed in (311, 312, 313, 314)
        ]
        ready, sold, reserved, failed = ids
        for item_id in ids:
            await wait_status(http, item_id, "ready")
        for item_id, status in ((sold, "sold"), (reserved, "reserved")):
            assert (await http.patch(f"/api/items/{item_id}", json={"status": status}, headers=AUTH)).is_success
        connection = await asyncpg.connect(edge_server.database_url)
        try:
            await connection.execute(
                "UPDATE items SET status = 'failed', failure_reason = $2 WHERE id = $1",
                failed,
                "decode failed: /srv/secret.jpg",
            )
        finally:
            await connection.close()

        public = await http.get(f"/api/items/{ready}")
        assert public.status_code == 200 and public.json()["status"] == "ready"
        assert public.json()["failure_reason"] is None
        for hidden in (sold, reserved, failed):
            error = http_error(await http.get(f"/api/items/{hidden}"), 404)
            assert "secret" not in error["message"]
            # Exactly as an item that never existed.
            assert error == http_error(await http.get("/api/items/987654321"), 404) | {
                "message": error["message"]
            }
        admin = await http.get(f"/api/items/{failed}", headers=AUTH)
        assert admin.status_code == 200 and admin.json()["failure_reason"] == "decode failed: /srv/secret.jpg"
        assert (await http.get(f"/api/items/{sold}", headers=AUTH)).json()["status"] == "sold"
        # A wrong token is refused, not treated as public.
        wrong = await http.get(f"/api/items/{sold}", headers={"Authorization": "Bearer not-the-token-xxxxxx"})
        http_error(wrong, 403)


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
