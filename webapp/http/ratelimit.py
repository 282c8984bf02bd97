"""Per-client limits: token buckets and in-flight slots keyed by client address, and where that
address comes from.

A bucket bounds how often a client may ask; its slots bound how much of the task's work it holds
at once (a fair share: a client's 33rd concurrent search waits on its own 32 others, never on
other shoppers').

With Redis the buckets, and the bar on a flooder, are shared by every task (shared_limits), so
behind a load balancer a client gets its rate once, not once per task. When Redis cannot answer,
each task falls back to its own buckets here: a client then gets up to N times its rate across N
tasks, never an unlimited one, and never an error. The slots stay in the process: they bound
what a client holds of this task's work, which is what a task has to protect, and sharing them
would cost a round trip per request and leases that outlive a crashed task.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from cachetools import TTLCache
from quart import current_app, has_request_context, request
from quart_schema import document_response
from werkzeug.datastructures import Headers
from werkzeug.exceptions import HTTPException

from webapp.adapters.cache import RedisBackend, RedisUnavailable
from webapp.config import LimitsSettings
from webapp.http.errors import ApiError
from webapp.http.schemas import ErrorOut
from webapp.http.shared_limits import SharedBuckets

P = ParamSpec("P")
R = TypeVar("R")
EXTENSION = "prethrift_rate_limits"


class TokenBucket:
    """``rate`` events a second on average, bursts up to ``capacity``."""

    def __init__(self, rate: float, capacity: float) -> None:
        self.rate = rate
        self.capacity = capacity
        self.tokens = capacity
        self.updated = time.monotonic()

    def take(self) -> float:
        """Take one token: 0.0 when allowed, else the seconds until one will be there."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate

    def bar(self, seconds: float) -> None:
        """Allow nothing for ``seconds`` from now, then refill at the usual rate."""
        self.take()  # brings the count up to now
        self.tokens = min(self.tokens, 1 - seconds * self.rate)


class ClientLimiter:
    """One token bucket per client address; idle buckets (full again) are forgotten."""

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000, max_bar_s: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.max_bar_s = max_bar_s
        # A bucket left alone for burst/rate seconds (plus the longest bar) is full again:
        # forgetting it changes nothing.
        self._buckets: TTLCache[str, TokenBucket] = TTLCache(
            maxsize=max_clients, ttl=burst / rate + max_bar_s + 1
        )

    def take(self, client: str) -> float:
        bucket = self._buckets.get(client)
        if bucket is None:
            bucket = self._buckets[client] = TokenBucket(self.rate, self.burst)
        wait = bucket.take()
        self._buckets[client] = bucket  # refreshes the entry's time to live
        return wait

    def bar(self, client: str, seconds: float) -> None:
        """Refuse ``client`` for ``seconds`` (at most ``max_bar_s``)."""
        bucket = self._buckets.get(client) or TokenBucket(self.rate, self.burst)
        bucket.bar(min(seconds, self.max_bar_s))
        self._buckets[client] = bucket


class ClientSlots:
    """At most ``size`` requests of one client in flight; up to ``size`` more wait for one of them
    (for at most ``wait_s``), and the rest are refused at once, so a client's backlog costs the
    process a bounded number of waiting tasks."""

    def __init__(self, size: int, wait_s: float) -> None:
        self.size = size
        self.wait_s = wait_s
        self._running: dict[str, int] = {}
        self._waiting: dict[str, list[asyncio.Future[None]]] = {}

    def in_flight(self, client: str) -> int:
        return self._running.get(client, 0)

    async def acquire(self, client: str) -> None:
        """Take one of ``client``'s slots: ``LookupError`` when its queue is full, ``TimeoutError``
        when none came free within ``wait_s``."""
        running = self._running.get(client, 0)
        if running < self.size:
            self._running[client] = running + 1
            return
        queue = self._waiting.setdefault(client, [])
        if len(queue) >= self.size:
            raise LookupError(client)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(turn)
        try:
            # A finishing request hands its slot straight to the first waiter (the count stays),
            # so no newcomer can take it between the hand-over and this task running again.
            await asyncio.wait_for(asyncio.shield(turn), self.wait_s)
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release(client)  # handed over just as the wait ended: pass it on
            else:
                turn.cancel()
                queue.remove(turn)
                if not queue:
                    del self._waiting[client]
            raise

    def release(self, client: str) -> None:
        queue = self._waiting.get(client)
        if queue:
            turn = queue.pop(0)
            if not queue:
                del self._waiting[client]
            turn.set_result(None)
            return
        remaining = self._running[client] - 1
        if remaining:
            self._running[client] = remaining
        else:
            del self._running[client]


def client_address(headers: Headers, peer: str | None, trusted_proxies: int) -> str:
    """The client's address: the socket peer, or the X-Forwarded-For entry the nearest trusted
    proxy appended. Entries further left were written by the client and prove nothing."""
    if trusted_proxies > 0:
        hops = [h.strip() for h in ",".join(headers.getlist("X-Forwarded-For")).split(",") if h.strip()]
        if len(hops) >= trusted_proxies:
            return hops[-trusted_proxies][:64]
    return peer or "unknown"


def limit_headers(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class RateLimits:
    """The per-client limiters of one app, by name (search, photo_search, similar, upload,
    events, ws_open), and the in-flight slots of the expensive ones (search, photo_search, similar)."""

    def __init__(self, settings: LimitsSettings) -> None:
        self.settings = settings
        self.limiters = {
            "search": ClientLimiter(settings.search_per_s, settings.search_burst),
            "photo_search": ClientLimiter(settings.photo_search_per_s, settings.photo_search_burst),
            "similar": ClientLimiter(settings.similar_per_s, settings.similar_burst),
            "upload": ClientLimiter(settings.upload_per_s, settings.upload_burst),
            "events": ClientLimiter(settings.events_per_s, settings.events_burst),
            "ws_open": ClientLimiter(
                settings.ws_opens_per_s, settings.ws_open_burst, max_bar_s=settings.ws_flood_bar_s
            ),
        }
        wait = settings.concurrency_wait_s
        self.slots = {
            "search": ClientSlots(settings.search_concurrency, wait),
            "photo_search": ClientSlots(settings.photo_search_concurrency, wait),
            "similar": ClientSlots(settings.similar_concurrency, wait),
        }
        # The buckets every task shares, while the app serves with Redis.
        self.shared: SharedBuckets | None = None
        self._writing: set[asyncio.Task[None]] = set()

    def share(self, backend: RedisBackend | None) -> None:
        """Count clients in Redis through ``backend`` from now on (None: in this process only)."""
        self.shared = SharedBuckets(backend) if backend is not None else None

    async def take(self, name: str, client: str) -> float:
        """Take one of ``client``'s ``name`` tokens: 0.0 when allowed, else the seconds to wait."""
        limiter = self.limiters[name]
        if self.shared is not None:
            with contextlib.suppress(RedisUnavailable):
                return await self.shared.take(name, client, limiter.rate, limiter.burst)
        return limiter.take(client)

    def bar(self, name: str, client: str, seconds: float) -> None:
        """Refuse ``client``'s ``name`` requests for ``seconds``: in every task once Redis has it (a
        round trip later), and in this task's own buckets, which hold it while Redis cannot answer.
        The shared bar is written in the background because the caller, a socket's handler, must
        return at once: frames a flooder keeps sending wait on it."""
        limiter = self.limiters[name]
        limiter.bar(client, seconds)
        if self.shared is not None:
            writing = asyncio.create_task(
                self._bar_shared(self.shared, name, client, min(seconds, limiter.max_bar_s))
            )
            self._writing.add(writing)
            writing.add_done_callback(self._writing.discard)

    @staticmethod
    async def _bar_shared(shared: SharedBuckets, name: str, client: str, seconds: float) -> None:
        with contextlib.suppress(RedisUnavailable):
            await shared.bar(name, client, seconds)

    async def check(self, name: str, client: str) -> None:
        if not self.settings.rate_limits:
            return
        wait = await self.take(name, client)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                f"Too many requests from {client}; retry in {math.ceil(wait)} s.",
                headers=limit_headers(wait),
            )

    @contextlib.asynccontextmanager
    async def fair_share(self, name: str, client: str) -> AsyncIterator[None]:
        """Run the body in one of ``client``'s ``name`` slots, or refuse with 429 and Retry-After."""
        if not self.settings.rate_limits:
            yield
            return
        slots = self.slots[name]
        try:
            await slots.acquire(client)
        except (LookupError, TimeoutError):
            raise ApiError(
                429,
                "rate_limited",
                f"{client} already has {slots.size} such requests in progress; retry when one has answered.",
                headers=limit_headers(1),
            ) from None
        try:
            yield
        finally:
            slots.release(client)


async def _discard_body() -> None:
    """Read what the client is still uploading before refusing it: a server that answers and
    closes with the body unread resets the connection, and the client never sees the 429."""
    with contextlib.suppress(ApiError, HTTPException, OSError):
        async for _chunk in request.body:
            pass


def current_client() -> str:
    limits: RateLimits = current_app.extensions[EXTENSION]
    return client_address(request.headers, request.remote_addr, limits.settings.trusted_proxies)


@contextlib.asynccontextmanager
async def fair_share(name: str) -> AsyncIterator[None]:
    """The current request's client holds one of its ``name`` slots for the body (a no-op outside a
    request: the CLI and benchmarks call the same search code). Costly work on a cache miss runs
    in it, so cached answers never wait behind a client's own uncached ones."""
    if not has_request_context() or EXTENSION not in current_app.extensions:
        yield
        return
    limits: RateLimits = current_app.extensions[EXTENSION]
    async with limits.fair_share(name, current_client()):
        yield


def rate_limited(name: str) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Refuse a client past its ``name`` bucket with 429 and Retry-After, before any other work."""

    def decorate(view: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(view)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> R:
            limits: RateLimits = current_app.extensions[EXTENSION]
            try:
                await limits.check(name, current_client())
            except ApiError:
                await _discard_body()
                raise
            return await view(*args, **kwargs)

        documented: Any = document_response(ErrorOut, 429)(limited)
        return documented  # type: ignore[no-any-return]

    return decorate
