"""The service's edge against hostile clients, on a real socket: WebSocket compression bombs and
ping floods, cleartext HTTP/2, numbers the database cannot hold, and what is exposed to whom."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import boto3
import h2.config
import h2.connection
import h2.errors
import h2.events
import httpx
import pytest
import structlog
from pydantic import SecretStr
from quart import Quart

from bench.hostile import PeakRss, server_closed
from tests.conftest import ADMIN_TOKEN, TINY, scratch_database
from tests.webapp.conftest import photo, serve_subprocess
from webapp.config import DatabaseSettings, RedisSettings, Settings, StorageSettings
from webapp.http.errors import register_error_handlers

log = structlog.get_logger(__name__)
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# A client behind the one trusted proxy (the test speaks as that proxy).
OUTSIDER = {"X-Forwarded-For": "203.0.113.7"}
# "Still answering" on a busy shared CI box: generous, the abuse bench measures latency itself.
HEALTHY_WITHIN_S = 2.0


@dataclass
class Served:
    base: str
    pid: int
    host: str
    port: int
    database_url: str


@pytest.fixture(name="served", scope="module")
async def _served(
    postgres_dsn: str,
    template_db: str,
    redis_server: Any,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Served]:
    """One `prethrift serve` for the module (its start-up is most of each test's cost), behind
    one trusted proxy hop, with the inline worker embedding uploads."""
    tmp = tmp_path_factory.mktemp("edge")
    bucket = "prethrift-edge-" + uuid.uuid4().hex[:10]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    async with scratch_database(postgres_dsn, "edge_", template_db) as database_url:
        settings = Settings(
            admin_token=SecretStr(ADMIN_TOKEN),
            data_dir=tmp / "data",
            database=DatabaseSettings(url=SecretStr(database_url)),
            redis=RedisSettings(url=SecretStr(redis_server.url)),
            storage=StorageSettings(bucket=bucket, endpoint_url=s3_endpoint),
            clip=TINY,
        )
        with serve_subprocess(
            settings,
            tmp / "server.log",
            PRETHRIFT_LIMITS_TRUSTED_PROXIES="1",
            PRETHRIFT_WORKER_INLINE="true",
        ) as (base, pid):
            port = int(base.rsplit(":", 1)[1])
            yield Served(base, pid, "127.0.0.1", port, database_url)


def _masked(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """One client frame (RFC 6455 section 5.2): FIN, the opcode, masked payload."""
    mask = os.urandom(4)
    whole = (mask * (len(payload) // 4 + 1))[: len(payload)]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(whole, "big")).to_bytes(len(payload), "big")
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    if len(payload) < 126:
        head = bytes([first, 0x80 | len(payload)])
    elif len(payload) < 2**16:
        head = bytes([first, 0x80 | 126]) + struct.pack(">H", len(payload))
    else:
        head = bytes([first, 0x80 | 127]) + struct.pack(">Q", len(payload))
    return head + mask + masked


def _handshake(served: Served, client: str, extensions: str | None = None) -> tuple[socket.socket, str]:
    """A raw suggestion socket after its upgrade; returns it and the response head."""
    sock = socket.create_connection((served.host, served.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    sock.sendall(
        (
            f"GET /ws/suggest HTTP/1.1\r\nHost: {served.host}:{served.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"X-Forwarded-For: {client}\r\n{offer}\r\n"
        ).encode()
    )
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, "closed during the handshake"
            head += chunk
        text = head.split(b"\r\n\r\n", 1)[0].decode("latin1")
        assert text.startswith("HTTP/1.1 101"), text
    except BaseException:
        sock.close()
        raise
    return sock, text


def _close_code(sock: socket.socket, within_s: float) -> int | None:
    """Read server frames until a close frame (its code) or the end of the stream (None)."""
    received = bytearray()
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionError:
            return None  # reset: closed
        if not chunk:
            return None
        received += chunk
        while len(received) >= 2:
            opcode, length, start = received[0] & 0x0F, received[1] & 0x7F, 2
            if length == 126:
                length, start = struct.unpack(">H", received[2:4])[0], 4
            if len(received) < start + length:
                break
            if opcode == 0x8:
                return int(struct.unpack(">H", received[start : start + 2])[0]) if length >= 2 else 1005
            del received[: start + length]
    raise AssertionError(f"the socket was still open after {within_s} s")


async def _healthz_latencies(served: Served, until: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=served.base) as http:
        while not until.is_set():
            started = time.perf_counter()
            response = await http.get("/healthz", timeout=30)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            await asyncio.sleep(0.05)


@pytest.mark.timeout(60)
async def test_a_websocket_compression_bomb_is_never_inflated(served: Served) -> None:
    sock, head = _handshake(served, "198.51.100.21", "permessage-deflate; client_max_window_bits")
    # Fifty million spaces deflated to a frame a thousandth their size, sent compressed anyway
    # (RSV1 set).
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = squeeze.compress(b" " * 50_000_000) + squeeze.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]  # RFC 7692 section 7.2.1: the empty block's tail is not sent
    assert len(bomb) < 100_000
    done = asyncio.Event()
    latencies: list[float] = []
    with PeakRss(served.pid) as memory:
        probe = asyncio.create_task(_healthz_latencies(served, done, latencies))
        await asyncio.sleep(0.2)
        with sock:
            sock.sendall(_masked(0x1, bomb, rsv1=True))
            code = await asyncio.to_thread(_close_code, sock, 5.0)
        await asyncio.sleep(0.5)
        done.set()
        await probe
    log.info(
        "compression bomb",
        close_code=code,
        rss_growth_mb=round(memory.growth_mb, 1),
        healthz_max_s=max(latencies),
    )
    # The offer was declined, so nothing the client sends is inflated: the compressed frame is a
    # protocol error (1002) that closes the socket.
    assert "sec-websocket-extensions" not in head.lower(), head
    assert code in (1002, None)
    assert memory.growth_mb < 300
    assert max(latencies) < HEALTHY_WITHIN_S


def _ping_flood(sock: socket.socket, seconds: float) -> tuple[int, int | None]:
    """Send pings as fast as the socket takes them, glancing at the answers between batches;
    returns the pings sent and how the server ended it (its close code; None for a dropped
    socket; 0 when it was still open after ``seconds``)."""
    batch = _masked(0x9, b"ping") * 500
    sent = 0
    received = bytearray()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        sock.settimeout(0.5)
        try:
            sock.sendall(batch)
            sent += 500
            sock.settimeout(0)
            chunk = sock.recv(1 << 20)
        except (BlockingIOError, TimeoutError):
            continue
        except OSError:
            return sent, None
        if not chunk:
            return sent, None
        received += chunk
        if server_closed(received):  # leaves the close frame first in ``received``
            return sent, int.from_bytes(received[2:4], "big") if len(received) >= 4 else 1005
    return sent, 0


@dataclass
class PingFloodReport:
    pings: int = 0
    sockets: int = 0
    refused: int = 0


def _ping_flooder(served: Served, seconds: float) -> tuple[PingFloodReport, list[int | None]]:
    """A hostile client: floods a socket with pings, and opens another whenever one is closed."""
    report = PingFloodReport()
    endings: list[int | None] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock, _ = _handshake(served, "198.51.100.22")
        except (AssertionError, OSError):
            report.refused += 1
            time.sleep(0.05)
            continue
        report.sockets += 1
        with sock:
            sent, code = _ping_flood(sock, 2.0)
        report.pings += sent
        endings.append(code)
    return report, endings


@pytest.mark.timeout(60)
async def test_a_ping_flood_is_closed_and_the_service_keeps_answering(served: Served) -> None:
    done = asyncio.Event()
    latencies: list[float] = []
    probe = asyncio.create_task(_healthz_latencies(served, done, latencies))
    report, endings = await asyncio.to_thread(_ping_flooder, served, 4.0)
    done.set()
    await probe
    log.info(
        "ping flood", report=report, endings=endings[:10], healthz_max_s=max(latencies), probes=len(latencies)
    )
    # The flooded socket was closed (policy violation, or dropped), and the flooder was then
    # barred from opening another, as a data flooder is.
    assert report.sockets == 1 and set(endings) <= {1008, None}, endings
    assert report.refused >= 1
    assert len(latencies) >= 10 and max(latencies) < HEALTHY_WITHIN_S
    # A well-behaved socket still gets its pongs.
    polite, _ = _handshake(served, "198.51.100.23")
    with polite:
        polite.sendall(_masked(0x9, b"hello"))
        polite.settimeout(5)
        assert polite.recv(64)[:1] == b"\x8a"  # pong


def _h2_prior_knowledge(served: Served) -> list[h2.events.Event]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client.initiate_connection()
    client.send_headers(
        1,
        [(":method", "GET"), (":path", "/healthz"), (":scheme", "http"), (":authority", "localhost")],
        end_stream=True,
    )
    events: list[h2.events.Event] = []
    with socket.create_connection((served.host, served.port), timeout=5) as sock:
        sock.sendall(client.data_to_send())
        while chunk := sock.recv(65536):
            events += client.receive_data(chunk)
    return events


async def test_cleartext_http2_is_refused(served: Served) -> None:
    events = await asyncio.to_thread(_h2_prior_knowledge, served)
    assert not [e for e in events if isinstance(e, h2.events.ResponseReceived)], events
    ended = [e for e in events if isinstance(e, h2.events.ConnectionTerminated)]
    assert ended and ended[0].error_code == h2.errors.ErrorCodes.HTTP_1_1_REQUIRED, events
    # An upgrade to h2c is ignored: the request is answered in HTTP/1.1.
    upgrade = {"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c", "HTTP2-Settings": "AAMAAABkAAQAAP__"}
    async with httpx.AsyncClient(base_url=served.base) as http:
        response = await http.get("/healthz", headers=upgrade)
    assert response.status_code == 200 and response.http_version == "HTTP/1.1"
    assert response.json() == {"status": "alive"}


async def _items_in_database(served: Served) -> list[tuple[int, str, str]]:
    connection = await asyncpg.connect(served.database_url)
    try:
        rows = await connection.fetch("SELECT id, price::text, status FROM items ORDER BY id")
    finally:
        await connection.close()
    return [(r["id"], r["price"], r["status"]) for r in rows]


def _listing(**fields: str) -> dict[str, str]:
    return {"title": "Wool coat", "category": "outerwear", "price": "40.00", "currency": "USD", **fields}


async def _upload(http: httpx.AsyncClient, seed: int, **fields: str) -> httpx.Response:
    return await http.post(
        "/api/items",
        data=_listing(**fields),
        files={"image": ("coat.jpg", photo(seed), "image/jpeg")},
        headers=AUTH,
    )


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()["error"]
    assert body["code"] and body["message"]
    return body


OUT_OF_RANGE_PRICES = ["1E-20000", "0E-1000000", "1E+400", "0.001", "1000000.01", "12345678901234567890"]


async def test_numbers_the_database_cannot_hold_are_refused_and_change_nothing(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        accepted = await _upload(http, 301)
        assert accepted.status_code == 202, accepted.text
        item_id = accepted.json()["id"]
        await _wait_status(http, item_id, "ready")
        before = await _items_in_database(served)

        for price in OUT_OF_RANGE_PRICES:
            for name in ("price_max", "price_min"):
                _error(await http.get("/api/search", params={name: price}), 422)
                _error(await http.get("/api/items", params={name: price}, headers=AUTH), 422)
            _error(await _upload(http, 302, price=price), 422)
            _error(await http.patch(f"/api/items/{item_id}", json={"price": price}, headers=AUTH), 422)
            _error(
                await http.patch(
                    f"/api/items/{item_id}",
                    data={"price": price},
                    files={"image": ("new.jpg", photo(303), "image/jpeg")},
                    headers=AUTH,
                ),
                422,
            )
        for cursor in ("9223372036854775808", "9999999999999999999"):
            error = _error(await http.get("/api/items", params={"cursor": cursor}, headers=AUTH), 422)
            assert "cursor" in error["message"]
        # What the column holds is still accepted, written in any notation.
        assert (
            await http.get("/api/search", params={"price_max": "1E+2", "price_min": "0.50"})
        ).status_code == 200
        changed = await http.patch(f"/api/items/{item_id}", json={"price": "1.5E+1"}, headers=AUTH)
        assert changed.status_code == 200 and changed.json()["price"] == "15.00", changed.text
        last = await http.get("/api/items", params={"cursor": str(2**63 - 1)}, headers=AUTH)
        assert last.status_code == 200

    after = await _items_in_database(served)
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


SPELLINGS = ["/metrics", "//metrics", "/%6detrics", "/%6Detrics", "/./metrics", "/static/../metrics"]


async def test_metrics_are_served_only_to_loopback(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base) as http:
        # The collector beside the service, on loopback and not through the load balancer.
        local = await http.get("/metrics")
        assert local.status_code == 200 and "prethrift_request_seconds" in local.text
        for path in SPELLINGS:
            raw = httpx.URL(served.base + "/").copy_with(raw_path=path.encode())
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


async def _wait_status(http: httpx.AsyncClient, item_id: int, status: str) -> None:
    for _ in range(300):
        if (await http.get(f"/api/items/{item_id}", headers=AUTH)).json()["status"] == status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"item {item_id} never became {status}")


async def test_a_public_reader_sees_only_what_search_shows(served: Served) -> None:
    async with httpx.AsyncClient(base_url=served.base, timeout=30) as http:
        ids = [(await _upload(http, seed, title=f"Coat {seed}")).json()["id"] for seed in (311, 312, 313, 314)]
        ready, sold, reserved, failed = ids
        for item_id in ids:
            await _wait_status(http, item_id, "ready")
        for item_id, status in ((sold, "sold"), (reserved, "reserved")):
            assert (await http.patch(f"/api/items/{item_id}", json={"status": status}, headers=AUTH)).is_success
        connection = await asyncpg.connect(served.database_url)
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
            error = _error(await http.get(f"/api/items/{hidden}"), 404)
            assert "secret" not in error["message"]
            # Exactly as an item that never existed.
            assert error == _error(await http.get("/api/items/987654321"), 404) | {"message": error["message"]}
        admin = await http.get(f"/api/items/{failed}", headers=AUTH)
        assert admin.status_code == 200 and admin.json()["failure_reason"] == "decode failed: /srv/secret.jpg"
        assert (await http.get(f"/api/items/{sold}", headers=AUTH)).json()["status"] == "sold"
        # A wrong token is refused, not treated as public.
        wrong = await http.get(f"/api/items/{sold}", headers={"Authorization": "Bearer not-the-token-xxxxxx"})
        _error(wrong, 403)
