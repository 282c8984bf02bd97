"""What Hypercorn accepts on the service's socket, bounded: HTTP/1.1 and uncompressed WebSockets.

Each stream here replaces one of Hypercorn's (0.17, 0.18) through ``install``:

- HTTP/2 is refused. Cleartext HTTP/2 (h2c, by prior knowledge or by ``Upgrade: h2c``) let one
  connection open and reset streams as fast as it could send them (the "rapid reset" attack):
  every reset stream had already started a request in the application. HTTP/2 belongs at the
  load balancer, which speaks HTTP/1.1 to the tasks. A prior-knowledge client gets GOAWAY with
  HTTP_1_1_REQUIRED (RFC 9113 section 7); an ``Upgrade: h2c`` header is ignored and the request
  answered in HTTP/1.1 (RFC 9110 section 7.8 lets a server ignore Upgrade).
- WebSockets are never compressed. With permessage-deflate a frame is inflated whole before any
  size check: a small frame of repeated bytes inflates a thousandfold and holds the event loop
  while it does. Suggestion
  frames are a few hundred bytes, so compression gains nothing; a client that sends a
  compressed frame anyway is closed with a protocol error (1002) before anything is inflated.
- Control frames (ping, pong) are counted per socket. They never reach the application, so its
  frame limit never saw them and a ping flood cost a pong each, without end. Pings within the
  socket's frame rate are answered, those past it are not, and a socket that keeps on past its
  flood allowance is closed with 1008 like a data flood.
- A WebSocket's connection is released once the application has closed it, whatever the client
  does. Hypercorn hands every frame to the application through a queue of ten, also frames
  that arrive after the application sent its close frame and returned. A client that keeps
  sending after a server-side close (a flood cut off by the suggestion socket) filled that
  queue, nobody read it any more, and the connection's reader waited on it for good. Frames
  that arrive after the application's close are dropped (the client's own close frame is still
  answered) and the application is told of the disconnect without waiting on a full queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.connection
import h2.errors
import hypercorn.protocol
from hypercorn.events import Closed, RawData
from hypercorn.protocol import h2 as hypercorn_h2
from hypercorn.protocol import h11
from hypercorn.protocol.events import Body, Data, Event, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, FrameTooLargeError, WSStream
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Message, Ping, Pong
from wsproto.frame_protocol import CloseReason

from webapp.http.ratelimit import TokenBucket

_AFTER_CLOSE = {ASGIWebsocketState.CLOSED, ASGIWebsocketState.HTTPCLOSED}
# How long a disconnect waits for room in the application's queue before it is dropped.
DISCONNECT_WAIT_S = 1.0
# RFC 6455 section 7.4.1: the endpoint received a message that violates its policy.
CLOSE_POLICY = 1008
# Set in the socket's ASGI scope when it is closed for flooding control frames, below the
# application: the suggestion route bars the client from reopening, as for a data flood.
FLOODED = "prethrift.flooded"


@dataclass(frozen=True)
class ControlFrameLimits:
    """Control frames a WebSocket may send: ``per_s`` on average, ``burst`` at once, and
    ``flood`` more past that rate before the socket is closed."""

    per_s: float
    burst: int
    flood: int


class ReleasingWSStream(WSStream):
    def __init__(self, *args: Any, control: ControlFrameLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.control_frames = TokenBucket(control.per_s, control.burst)
        self.control_flood = TokenBucket(control.per_s, control.flood)

    async def handle(self, event: Event) -> None:
        if isinstance(event, StreamClosed) and not self.closed:
            self.closed = True
            if self.app_put is not None:
                code = (
                    CloseReason.NORMAL_CLOSURE if self.state in _AFTER_CLOSE else CloseReason.ABNORMAL_CLOSURE
                )
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(DISCONNECT_WAIT_S):
                        await self.app_put({"type": "websocket.disconnect", "code": code.value})
        elif isinstance(event, (Body, Data)) and self.state in _AFTER_CLOSE and not self.closed:
            # The application has closed: only the client's close frame matters now.
            self.connection.receive_data(event.data)
            if any(isinstance(ws_event, CloseConnection) for ws_event in self.connection.events()):
                await self.send(StreamClosed(stream_id=self.stream_id))
        else:
            await super().handle(event)

    async def _accept(self, message: Any) -> None:
        # No extension is negotiated, whatever the client offers: permessage-deflate is off.
        self.handshake.extensions = None
        await super()._accept(message)

    async def _handle_events(self) -> None:
        # Hypercorn's loop, with control frames counted before they cost a pong.
        for event in self.connection.events():
            if isinstance(event, Message):
                try:
                    self.buffer.extend(event)
                except FrameTooLargeError:
                    await self._send_wsproto_event(CloseConnection(code=CloseReason.MESSAGE_TOO_BIG))
                    break
                if event.message_finished and self.app_put is not None:
                    await self.app_put(self.buffer.to_message())
                    self.buffer.clear()
            elif isinstance(event, (Ping, Pong)):
                if self.control_frames.take() == 0:
                    if isinstance(event, Ping):
                        await self._send_wsproto_event(event.response())
                elif self.control_flood.take() > 0:
                    self.scope[FLOODED] = True  # type: ignore[literal-required]
                    await self._send_wsproto_event(CloseConnection(code=CLOSE_POLICY, reason="too many frames"))
                    await self.send(StreamClosed(stream_id=self.stream_id))
                    break
            elif isinstance(event, CloseConnection):
                if self.connection.state == ConnectionState.REMOTE_CLOSING:
                    await self._send_wsproto_event(event.response())
                elif self.connection.state == ConnectionState.OPEN:
                    # A frame that could not be parsed (a compressed one, say): say why, then close.
                    await self._send_wsproto_event(CloseConnection(code=event.code, reason=event.reason))
                await self.send(StreamClosed(stream_id=self.stream_id))


class Http1Only(h11.H11Protocol):
    """HTTP/1.1 that never switches to HTTP/2 on an ``Upgrade: h2c`` header."""

    async def _check_protocol(self, event: Any) -> None:
        upgrades = [
            value.strip().lower() for name, value in event.headers if name.strip().lower() == b"upgrade"
        ]
        if b"h2c" in upgrades:
            return  # answered in HTTP/1.1
        await super()._check_protocol(event)


class Http2Refused:
    """Stands in for Hypercorn's HTTP/2 protocol: answers the connection preface with SETTINGS
    and GOAWAY (HTTP_1_1_REQUIRED), then closes, before any request reaches the application."""

    def __init__(self, *args: Any) -> None:
        # Hypercorn passes (app, config, context, task_group, state, ssl, client, server, send).
        self.send = args[8]

    async def initiate(self, headers: Any = None, settings: Any = None) -> None:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        connection.initiate_connection()
        connection.close_connection(error_code=h2.errors.ErrorCodes.HTTP_1_1_REQUIRED)
        await self.send(RawData(data=connection.data_to_send()))
        await self.send(Closed())

    async def handle(self, event: Event) -> None:
        return None


def install(control: ControlFrameLimits) -> None:
    """Replace Hypercorn's protocols by the ones above (HTTP/3 needs aioquic, which the service
    does not install or bind)."""
    stream = functools.partial(ReleasingWSStream, control=control)
    for module in (h11, hypercorn_h2):
        setattr(module, "WSStream", stream)  # noqa: B010 (replaces a module global)
    setattr(hypercorn.protocol, "H11Protocol", Http1Only)  # noqa: B010
    setattr(hypercorn.protocol, "H2Protocol", Http2Refused)  # noqa: B010
