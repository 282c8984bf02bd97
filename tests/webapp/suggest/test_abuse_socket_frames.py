"""What a suggestion socket's frames can carry: odd frames get error frames and the socket lives,
a compression bomb is never inflated, an idle socket is closed."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import AsyncIterator

import pytest
import structlog
import websockets

from bench.hostile import PeakRss
from tests.webapp.conftest import Served
from tests.webapp.suggest.sockets import close_code, handshake, healthz_latencies, hypercorn, masked
from webapp.app import create_app
from webapp.config import LimitsSettings, Settings
from webapp.embedding.embedder import ClipModel


@pytest.fixture(name="live_base")
async def _live_base(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[str]:
    async with hypercorn(create_app(settings, clip=tiny_clip)) as base:
        yield base


async def test_odd_websocket_frames_get_error_frames_and_the_socket_lives(live_base: str) -> None:
    frames = [
        '{"q": "denim\\udbff\\udfff", "seq": 1}',  # q ends in U+10FFFF: a real answer
        '{"q": "den\\ud800im", "seq": 2}',  # a lone surrogate
        "[" * 2000 + "]" * 2000,  # nested past the parser's recursion limit
        "[" * 100_000 + "]" * 100_000,  # nested 100k deep (and larger than a frame may be)
        b"\xff\xfe binary",
    ]
    async with websockets.connect(f"ws://{live_base}/ws/suggest", max_size=2**20) as ws:
        answers = []
        for frame in frames:
            await ws.send(frame)
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        await ws.send(json.dumps({"q": "coat", "seq": 9}))
        last = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert answers[0]["seq"] == 1 and "suggestions" in answers[0], answers[0]
    assert answers[1]["seq"] == 2 and answers[1]["error"]["code"] == "bad_frame"
    assert answers[2]["error"]["code"] == "bad_frame"
    assert answers[3]["error"]["code"] == "frame_too_large"
    assert answers[4]["error"]["code"] == "bad_frame"
    assert last["seq"] == 9 and "suggestions" in last


async def test_an_idle_socket_is_closed(settings: Settings, tiny_clip: ClipModel) -> None:
    app = create_app(settings.model_copy(update={"limits": LimitsSettings(ws_idle_s=0.5)}), clip=tiny_clip)
    async with hypercorn(app) as base, websockets.connect(f"ws://{base}/ws/suggest") as ws:
        await ws.send(json.dumps({"q": "coat", "seq": 1}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["seq"] == 1
        with pytest.raises(websockets.ConnectionClosedOK):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1000 and ws.close_reason == "idle"


log = structlog.get_logger(__name__)


# "Still answering" on a busy shared CI box: generous, the abuse bench measures latency itself.
HEALTHY_WITHIN_S = 2.0


@pytest.mark.timeout(60)
async def test_a_websocket_compression_bomb_is_never_inflated(edge_server: Served) -> None:
    sock, head = handshake(edge_server, "198.51.100.21", "permessage-deflate; client_max_window_bits")
    # Fifty million spaces deflated to a frame a thousandth their size, sent compressed anyway
    # (RSV1 set).
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = squeeze.compress(b" " * 50_000_000) + squeeze.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]  # RFC 7692 section 7.2.1: the empty block's tail is not sent
    assert len(bomb) < 100_000
    done = asyncio.Event()
    latencies: list[float] = []
    with PeakRss(edge_server.pid) as memory:
        probe = asyncio.create_task(healthz_latencies(edge_server, done, latencies))
        await asyncio.sleep(0.2)
        with sock:
            sock.sendall(masked(0x1, bomb, rsv1=True))
            code = await asyncio.to_thread(close_code, sock, 5.0)
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
