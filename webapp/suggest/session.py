"""One shopper's suggestion socket: newest keystroke wins, bad frames get error frames."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Coroutine
from typing import Annotated, Any

import structlog
from pydantic import BaseModel, Field, ValidationError
from quart import Websocket

from webapp.context import Services
from webapp.schemas import Printable
from webapp.search.service import normalise_query
from webapp.suggest.repo import MAX_QUERY_CHARS

log = structlog.get_logger(__name__)


class SuggestFrame(BaseModel):
    q: Annotated[str, Field(max_length=MAX_QUERY_CHARS), Printable]
    seq: int = Field(ge=0)


class TokenBucket:
    """``rate`` frames a second on average, bursts up to ``capacity``."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class SuggestSession:
    def __init__(
        self, services: Services, websocket: Websocket, *, rate: float = 15.0, burst: float = 30.0
    ) -> None:
        self.services = services
        self.websocket = websocket
        self.bucket = TokenBucket(rate, burst)
        self._current: asyncio.Task[None] | None = None
        self._errors: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                raw = await self.websocket.receive()
                self._handle(raw)
        except asyncio.CancelledError:
            raise
        finally:
            pending = [t for t in (self._current, *self._errors) if t is not None]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _handle(self, raw: str | bytes) -> None:
        data: Any = None
        with contextlib.suppress(ValueError):
            data = json.loads(raw)
        try:
            frame = SuggestFrame.model_validate(data)
        except ValidationError:
            seq = data.get("seq") if isinstance(data, dict) and isinstance(data.get("seq"), int) else None
            message = 'Send JSON frames like {"q": "denim ja", "seq": 3} (q at most 100 characters).'
            self._side(self._send({"seq": seq, "error": {"code": "bad_frame", "message": message}}))
            return
        if not self.bucket.take():
            error = {"code": "rate_limited", "message": "Too many frames; slow down."}
            self._side(self._send({"seq": frame.seq, "error": error}))
            return
        # A newer keystroke makes the previous answer useless: cancel it.
        if self._current is not None and not self._current.done():
            self._current.cancel()
        self._current = asyncio.ensure_future(self._answer(frame))

    def _side(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._errors.add(task)
        task.add_done_callback(self._errors.discard)

    async def _send(self, payload: dict[str, Any]) -> None:
        await self.websocket.send(json.dumps(payload))

    async def _answer(self, frame: SuggestFrame) -> None:
        prefix = normalise_query(frame.q)
        suggestions: list[str] = []
        items: list[dict[str, Any]] = []
        suggester = self.services.suggester
        if prefix:
            answer = await suggester.suggest(prefix, self.services.queries)
            suggestions = answer.completions
            items = [
                {
                    "id": h.id,
                    "title": h.title,
                    "size": h.size,
                    "price": str(h.price),
                    "currency": h.currency.strip(),
                    "image_url": await self.services.storage.url(h.image_key),
                }
                for h in answer.items
            ]
        await self._send({"seq": frame.seq, "suggestions": suggestions, "items": items})
