"""Raw WebSocket helpers the socket abuse tests share: a Hypercorn server on loopback, hand-made
client frames, the handshake, the close code, and a health probe that runs meanwhile."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart

from tests.webapp.conftest import Served
from webapp.adapters.cache import free_port


@contextlib.asynccontextmanager
async def hypercorn(app: Quart) -> AsyncIterator[str]:
    """The app behind a real Hypercorn socket on loopback; yields host:port once ready."""
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(300):
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get("/readyz")).status_code == 200:
                        break
                await asyncio.sleep(0.02)
        yield f"127.0.0.1:{port}"
    finally:
        stop.set()
        await server


def masked(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
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


def handshake(edge_server: Served, client: str, extensions: str | None = None) -> tuple[socket.socket, str]:
    """A raw suggestion socket after its upgrade; returns it and the response head."""
    sock = socket.create_connection((edge_server.host, edge_server.port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    offer = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
    sock.sendall(
        (
            f"GET /ws/suggest HTTP/1.1\r\nHost: {edge_server.host}:{edge_server.port}\r\nUpgrade: websocket\r\n"
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


def close_code(sock: socket.socket, within_s: float) -> int | None:
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


async def healthz_latencies(edge_server: Served, until: asyncio.Event, latencies: list[float]) -> None:
    async with httpx.AsyncClient(base_url=edge_server.base) as http:
        while not until.is_set():
            started = time.perf_counter()
            response = await http.get("/healthz", timeout=30)
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200
            await asyncio.sleep(0.05)
