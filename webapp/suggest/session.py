"""One shopper's suggestion socket: newest keystroke wins, bad frames get error frames.

A socket costs the process a bounded amount whatever the client does: every frame is counted
against the socket's rate before any other work, at most one answer is being computed and at
most one waits to be sent (a newer one replaces it), a client that stops reading is
disconnected, and an idle socket is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, Field, ValidationError
from quart import Websocket

from webapp.config import LimitsSettings
from webapp.http.errors import ApiError
from webapp.http.ratelimit import TokenBucket
from webapp.http.schemas import Printable, SearchHitOut
from webapp.search.parse import normalise_query
from webapp.search.repo import loaded_queries
from webapp.services import Services
from webapp.suggest.repo import MAX_QUERY_CHARS, suggester_of

# What a suggestion preview shows of each item.
PREVIEW_FIELDS = {"id", "title", "size", "price", "currency", "image_url"}

log = structlog.get_logger(__name__)

BAD_FRAME = 'Send JSON frames like {"q": "denim ja", "seq": 3} (q at most 100 characters).'
# Close codes from RFC 6455 section 7.4.1.
CLOSE_POLICY = 1008
# Refused frames a socket may send beyond its rate before it is closed; the allowance refills at
# the frame rate. Minutes of a shopper typing too fast never use it up, a flooding script does
# within a second.
FLOOD_FRAMES = 2000


class SuggestFrame(BaseModel):
    q: Annotated[str, Field(max_length=MAX_QUERY_CHARS), Printable]
    seq: int = Field(ge=0, le=2**53)


class SocketCounts:
    """Open suggestion sockets, per client address and in total, within the configured caps."""

    def __init__(self) -> None:
        self.by_client: Counter[str] = Counter()
        self.total = 0

    @contextlib.contextmanager
    def hold(self, client: str, limits: LimitsSettings) -> Iterator[None]:
        if self.by_client[client] >= limits.ws_per_client:
            raise ApiError(
                429,
                "too_many_sockets",
                f"{client} already has {limits.ws_per_client} suggestion sockets open; close one first.",
                headers={"Retry-After": "5"},
            )
        if self.total >= limits.ws_total:
            raise ApiError(
                503,
                "busy",
                "Too many suggestion sockets are open; retry shortly.",
                headers={"Retry-After": "5"},
            )
        self.by_client[client] += 1
        self.total += 1
        try:
            yield
        finally:
            self.total -= 1
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]


class Flooding(Exception):
    """The client kept sending far past its rate."""


class SlowReader(Exception):
    """The client did not take an answer within the send timeout."""


class SuggestSession:
    def __init__(self, services: Services, websocket: Websocket, limits: LimitsSettings) -> None:
        self.services = services
        self.websocket = websocket
        self.limits = limits
        self.bucket = TokenBucket(limits.ws_frames_per_s, limits.ws_frame_burst)
        self.flood_allowance = TokenBucket(limits.ws_frames_per_s, FLOOD_FRAMES)
        # Set when the socket was closed for flooding.
        self.flooded = False
        self._answering: asyncio.Task[None] | None = None
        # The newest unsent frame; a newer one replaces it, so a client that reads slowly
        # costs one frame of memory, not a queue.
        self._outbox: dict[str, Any] | None = None
        self._outbox_filled = asyncio.Event()
        self._last_limited_notice = -1.0

    async def run(self) -> None:
        await self.websocket.accept()
        sender = asyncio.create_task(self._send_loop())
        receiver = asyncio.create_task(self._receive_loop())
        try:
            done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                error = task.exception()
                if isinstance(error, SlowReader):
                    log.info(
                        "suggestion socket closed: client does not read", after_s=self.limits.ws_send_timeout_s
                    )
                    await self._close(CLOSE_POLICY, "not reading answers")
                elif isinstance(error, Flooding):
                    self.flooded = True
                    log.info("suggestion socket closed: flooding", frames=FLOOD_FRAMES)
                    await self._close(CLOSE_POLICY, "too many frames")
                elif isinstance(error, TimeoutError):
                    await self._close(1000, "idle")
                elif error is not None:
                    raise error
        finally:
            pending = [t for t in (sender, receiver, self._answering) if t is not None and not t.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    async def _close(self, code: int, reason: str) -> None:
        # A client that does not read may not take the close frame either.
        with contextlib.suppress(TimeoutError, OSError):
            async with asyncio.timeout(1.0):
                await self.websocket.close(code, reason)

    async def _receive_loop(self) -> None:
        while True:
            async with asyncio.timeout(self.limits.ws_idle_s):
                raw = await self.websocket.receive()
            self._handle(raw)

    async def _send_loop(self) -> None:
        while True:
            await self._outbox_filled.wait()
            payload, self._outbox = self._outbox, None
            self._outbox_filled.clear()
            if payload is None:
                continue
            try:
                async with asyncio.timeout(self.limits.ws_send_timeout_s):
                    await self.websocket.send(json.dumps(payload))
            except TimeoutError:
                raise SlowReader from None

    def _post(self, payload: dict[str, Any]) -> None:
        self._outbox = payload
        self._outbox_filled.set()

    def _error(self, seq: int | None, code: str, message: str) -> None:
        self._post({"seq": seq, "error": {"code": code, "message": message}})

    def _handle(self, raw: str | bytes) -> None:
        # Counted before anything else: a flood of frames, good or bad, costs a comparison each.
        if self.bucket.take() > 0:
            if self.flood_allowance.take() > 0:
                raise Flooding
            now = time.monotonic()
            if now - self._last_limited_notice >= 1.0:  # one notice a second, not one a frame
                self._last_limited_notice = now
                self._error(None, "rate_limited", "Too many frames; slow down.")
            return
        if len(raw) > self.limits.ws_max_frame_bytes:
            self._error(None, "frame_too_large", f"Frames are at most {self.limits.ws_max_frame_bytes} bytes.")
            return
        data: Any = None
        # RecursionError: JSON nested thousands deep.
        with contextlib.suppress(ValueError, RecursionError):
            data = json.loads(raw)
        try:
            frame = SuggestFrame.model_validate(data)
        except ValidationError:
            seq = data.get("seq") if isinstance(data, dict) else None
            self._error(seq if isinstance(seq, int) and 0 <= seq <= 2**53 else None, "bad_frame", BAD_FRAME)
            return
        # A newer keystroke makes the previous answer useless: cancel it.
        if self._answering is not None and not self._answering.done():
            self._answering.cancel()
        self._answering = asyncio.create_task(self._answer(frame))

    async def _answer(self, frame: SuggestFrame) -> None:
        try:
            self._post(await self._suggestions(frame))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("suggestions failed", seq=frame.seq)
            self._error(frame.seq, "unavailable", "Suggestions are unavailable right now; keep typing.")

    async def _suggestions(self, frame: SuggestFrame) -> dict[str, Any]:
        prefix = normalise_query(frame.q)
        suggestions: list[str] = []
        items: list[dict[str, Any]] = []
        suggester = suggester_of(self.services)
        if prefix:
            answer = await suggester.suggest(prefix, loaded_queries(self.services))
            suggestions = answer.completions
            items = [
                SearchHitOut.from_row(h, await self.services.storage.url(h.image_key)).model_dump(
                    include=PREVIEW_FIELDS
                )
                for h in answer.items
            ]
        return {"seq": frame.seq, "suggestions": suggestions, "items": items}
