"""The suite's network safety net refuses any connect off this machine, before it happens."""

from __future__ import annotations

import asyncio
import socket

import pytest

from tests.conftest import _net_violations


async def test_a_connect_off_the_machine_is_refused_before_any_packet() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): nothing answers there, and nothing is sent.
    with pytest.raises(ConnectionRefusedError, match="safety net"):
        socket.create_connection(("192.0.2.1", 80), timeout=1)
    with pytest.raises(ConnectionRefusedError, match="safety net"):
        await asyncio.wait_for(asyncio.open_connection("192.0.2.1", 80), 2)
    with socket.socket() as raw, pytest.raises(ConnectionRefusedError):
        raw.connect_ex(("169.254.169.254", 80))
    assert len(_net_violations) == 3
    _net_violations.clear()  # this test meant them; any other test failing here is a leak


async def test_loopback_stays_allowed() -> None:
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        _reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.close()
    assert not _net_violations
