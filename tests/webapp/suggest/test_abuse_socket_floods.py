"""Floods over suggestion sockets: sockets per client are capped, a message or ping flooder is
closed and barred, and the service keeps answering everyone else."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import pytest
import structlog
import websockets

from bench.hostile import (
    PeakRss,
    established_connections,
    flood_websocket,
    server_closed,
)
from tests.webapp.conftest import Served
from tests.webapp.suggest.sockets import handshake, healthz_latencies, hypercorn, masked
from webapp.app import create_app
from webapp.config import LimitsSettings, Settings
from webapp.embedding.embedder import ClipModel
from webapp.suggest.session import FLOOD_FRAMES


async def test_sockets_per_client_are_capped(settings: Settings, tiny_clip: ClipModel) -> None:
    app = create_app(settings.model_copy(update={"limits": LimitsSettings(ws_per_client=2)}), clip=tiny_clip)
    async with hypercorn(app) as base:
        url = f"ws://{base}/ws/suggest"
        async with websockets.connect(url) as first, websockets.connect(url):
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(url):
                    pass
            assert refused.value.response.status_code == 429
            assert json.loads(refused.value.response.body or b"{}")["error"]["code"] == "too_many_sockets"
            await first.send(json.dumps({"q": "coat", "seq": 1}))
            assert json.loads(await asyncio.wait_for(first.recv(), 10))["seq"] == 1
        # Closing one frees its place.
        async with websockets.connect(url) as again:
            await again.send(json.dumps({"q": "coat", "seq": 2}))
            assert json.loads(await asyncio.wait_for(again.recv(), 10))["seq"] == 2


async def test_a_flooding_socket_is_closed_and_its_client_barred(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    limits = LimitsSettings(trusted_proxies=1, ws_flood_bar_s=60)
    app = create_app(settings.model_copy(update={"limits": limits}), clip=tiny_clip)
    flooder = {"X-Forwarded-For": "203.0.113.9"}
    async with hypercorn(app) as base:
        url = f"ws://{base}/ws/suggest"
        async with websockets.connect(url, additional_headers=flooder) as ws:
            # Far past the rate, sent faster than the allowance refills, never reading.
            with pytest.raises(websockets.ConnectionClosedError):
                for sent in range(20_000):
                    await ws.send("not json at all")
                    if sent % 500 == 0:
                        await asyncio.sleep(0.01)
                await asyncio.wait_for(ws.wait_closed(), 10)
            assert ws.close_code == 1008 and ws.close_reason == "too many frames"
        # Reconnecting at once would resume the flood: refused, with when to come back.
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(url, additional_headers=flooder):
                pass
        assert refused.value.response.status_code == 429
        assert int(refused.value.response.headers["Retry-After"]) >= 30
        # Another shopper is served as before.
        async with websockets.connect(url, additional_headers={"X-Forwarded-For": "198.51.100.4"}) as other:
            await other.send(json.dumps({"q": "coat", "seq": 1}))
            assert json.loads(await asyncio.wait_for(other.recv(), 10))["seq"] == 1


log = structlog.get_logger(__name__)


# "Still answering" on a busy shared CI box: generous, the abuse bench measures latency itself.
HEALTHY_WITHIN_S = 2.0


def _ping_flood(sock: socket.socket, seconds: float) -> tuple[int, int | None]:
    """Send pings as fast as the socket takes them, glancing at the answers between batches;
    returns the pings sent and how the server ended it (its close code; None for a dropped
    socket; 0 when it was still open after ``seconds``)."""
    batch = masked(0x9, b"ping") * 500
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


def _ping_flooder(edge_server: Served, seconds: float) -> tuple[PingFloodReport, list[int | None]]:
    """A hostile client: floods a socket with pings, and opens another whenever one is closed."""
    report = PingFloodReport()
    endings: list[int | None] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sock, _ = handshake(edge_server, "198.51.100.22")
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
async def test_a_ping_flood_is_closed_and_the_service_keeps_answering(edge_server: Served) -> None:
    done = asyncio.Event()
    latencies: list[float] = []
    probe = asyncio.create_task(healthz_latencies(edge_server, done, latencies))
    report, endings = await asyncio.to_thread(_ping_flooder, edge_server, 4.0)
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
    polite, _ = handshake(edge_server, "198.51.100.23")
    with polite:
        polite.sendall(masked(0x9, b"hello"))
        polite.settimeout(5)
        assert polite.recv(64)[:1] == b"\x8a"  # pong


# Generous for noisy shared CI machines: "answered" means within this; bench/abuse_bench.py
# measures the latency itself.
ANSWER_TIMEOUT_S = 5.0


async def _probe(http: httpx.AsyncClient, until: float, latencies: list[float]) -> None:
    """Another shopper: health checks and searches, one after another."""
    while time.monotonic() < until:
        for path, params in (("/healthz", {}), ("/api/search", {"q": "denim jacket"})):
            started = time.perf_counter()
            response = await http.get(path, params=params, timeout=ANSWER_TIMEOUT_S)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, (path, response.status_code, response.text[:200])
        await asyncio.sleep(0.1)


@pytest.mark.timeout(180)
async def test_a_websocket_flood_does_not_stall_the_service(photo_server: tuple[str, int]) -> None:
    base, pid = photo_server
    parts = urlsplit(base)
    assert parts.hostname and parts.port
    async with httpx.AsyncClient(base_url=base) as http:
        assert (await http.get("/api/search", params={"q": "warm up"})).status_code == 200
        with PeakRss(pid) as memory:
            during: list[float] = []
            flood = asyncio.create_task(asyncio.to_thread(flood_websocket, parts.hostname, parts.port, 15.0))
            await _probe(http, time.monotonic() + 15.0, during)
            report = await flood
            after: list[float] = []
            await _probe(http, time.monotonic() + 3.0, after)
    # Every socket the flood opened is released once the flooder has gone, also the ones the
    # server closed while frames kept coming.
    deadline = time.monotonic() + 10
    while (held := established_connections(pid, parts.port)) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    log.info(
        "flood",
        frames=report.frames_sent,
        connections=report.connections,
        refused=report.refused,
        probes=len(during),
        max_latency_during_s=round(max(during), 3),
        max_latency_after_s=round(max(after), 3),
        rss_growth_mb=round(memory.growth_mb, 1),
        connections_held=held,
    )
    assert held == 0
    # The flood reached the server, was cut off, and its reconnects were refused.
    assert report.connections >= 1 and report.frames_sent > FLOOD_FRAMES, report
    assert report.refused > 0, report
    assert len(during) >= 10 and after
    assert memory.growth_mb < 300
