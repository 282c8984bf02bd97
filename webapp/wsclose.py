"""Release a WebSocket's connection once the application has closed it, whatever the client does.

Hypercorn (0.17, 0.18) hands every frame to the application through a queue of ten, also frames
that arrive after the application sent its close frame and returned. A client that keeps sending
after a server-side close (a flood cut off by the suggestion socket) fills that queue, nobody
reads it any more, and the connection's reader waits on it for good: the socket is held until
the process exits, even after the client has gone. This stream drops frames that arrive after
the application's close (the client's own close frame is still answered) and tells the
application of the disconnect without waiting on a full queue.
"""

from __future__ import annotations

import asyncio
import contextlib

from hypercorn.protocol import h2, h11
from hypercorn.protocol.events import Body, Data, Event, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.events import CloseConnection
from wsproto.frame_protocol import CloseReason

_AFTER_CLOSE = {ASGIWebsocketState.CLOSED, ASGIWebsocketState.HTTPCLOSED}
# How long a disconnect waits for room in the application's queue before it is dropped.
DISCONNECT_WAIT_S = 1.0


class ReleasingWSStream(WSStream):
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


def install() -> None:
    """Make Hypercorn's HTTP/1 and HTTP/2 protocols create the releasing stream (HTTP/3 needs
    aioquic, which the service does not install or bind)."""
    for module in (h11, h2):
        setattr(module, "WSStream", ReleasingWSStream)  # noqa: B010 (replaces a module global)
