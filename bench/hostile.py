"""Hostile clients for the abuse bench and the tests: a raw WebSocket flooder, bomb-like photos,
and the resident memory of a server process with its children."""

from __future__ import annotations

import base64
import io
import os
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field

import psutil
from PIL import Image


def single_colour_png(side: int = 6300, colour: tuple[int, int, int] = (200, 30, 40)) -> bytes:
    """A ~130 KB PNG that decodes to side*side RGB pixels (159 MB at 6300)."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def with_text_chunk(png: bytes, text: str) -> bytes:
    """The same pixels with a tEXt chunk after IHDR: distinct bytes without re-encoding."""
    body = b"Comment\x00" + text.encode()
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    ihdr_end = 8 + 4 + 4 + 13 + 4
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its children."""
    try:
        process = psutil.Process(pid)
        total = process.memory_info().rss
        for child in process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:
                pass
        return int(total)
    except psutil.Error:
        return 0


def established_connections(pid: int, port: int) -> int:
    """TCP connections a server process holds open on its listening ``port``."""
    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(
        1 for c in connections if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


class PeakRss:
    """Samples a process tree's resident memory in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.start = rss_bytes(pid)
        self.peak = self.start
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.peak = max(self.peak, rss_bytes(self.pid))

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.start) / 2**20


def masked_text_frame(payload: bytes) -> bytes:
    # RFC 6455 section 5.2: FIN + text opcode, client frames are masked.
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + masked


def open_websocket(host: str, port: int, path: str, receive_buffer: int | None = None) -> socket.socket:
    """A raw WebSocket after the handshake; ``receive_buffer`` shrinks what the kernel takes in
    for a client that does not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(5)
    sock.connect((host, port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        sock.close()
        raise ConnectionError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
    # Never read again: the flooder ignores every answer.
    sock.settimeout(0.5)
    return sock


def server_closed(received: bytearray) -> bool:
    """Whether the unmasked server frames in ``received`` include a close frame (RFC 6455
    section 5.2); whole frames are consumed, a partial one is left for the next call."""
    while len(received) >= 2:
        opcode, length, start = received[0] & 0x0F, received[1] & 0x7F, 2
        if length == 126:
            if len(received) < 4:
                return False
            length, start = struct.unpack(">H", received[2:4])[0], 4
        elif length == 127:
            if len(received) < 10:
                return False
            length, start = struct.unpack(">Q", received[2:10])[0], 10
        if opcode == 0x8:
            return True
        if len(received) < start + length:
            return False
        del received[: start + length]
    return False


@dataclass
class FloodReport:
    frames_sent: int = 0
    connections: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


def flood_websocket(host: str, port: int, seconds: float, path: str = "/ws/suggest") -> FloodReport:
    """Send small non-JSON text frames as fast as possible for ``seconds``, ignoring every
    answer; reconnect whenever the server closes or drops the socket, as a hostile client would."""
    report = FloodReport()
    batch = masked_text_frame(b"not json at all") * 200
    deadline = time.monotonic() + seconds
    sock: socket.socket | None = None
    pending = memoryview(b"")
    received = bytearray()
    while time.monotonic() < deadline:
        if sock is None:
            try:
                sock = open_websocket(host, port, path)
                report.connections += 1
                pending = memoryview(b"")
                received.clear()
            except (OSError, ConnectionError) as error:
                report.refused += 1
                if len(report.errors) < 5:
                    report.errors.append(str(error))
                time.sleep(0.05)
                continue
        if not pending:
            # Between batches, glance at what came back: a close frame means the server is
            # discarding whatever follows, so the flooder starts again on a new socket.
            sock.settimeout(0)  # a glance: never wait for answers
            try:
                chunk = sock.recv(65536)
                received += chunk if chunk else b"\x88\x00"  # end of stream: closed too
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                received += b"\x88\x00"
            sock.settimeout(0.5)
            if server_closed(received):
                sock.close()
                sock = None
                continue
            pending = memoryview(batch)
            report.frames_sent += 200
        try:
            # send() either sends some bytes or times out having sent none: frames stay whole.
            pending = pending[sock.send(pending) :]
        except TimeoutError:
            continue  # the server is not reading: keep the socket, keep trying
        except OSError:
            sock.close()
            sock = None
    if sock is not None:
        sock.close()
    return report
