"""Rate limits counted in Redis for every task, and what happens when Redis cannot answer."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator

import pytest

from webapp.adapters.cache import RedisBackend
from webapp.config import LimitsSettings
from webapp.http.errors import ApiError
from webapp.http.ratelimit import RateLimits

LIMITS = LimitsSettings(search_per_s=0.1, search_burst=5, ws_opens_per_s=1.0, ws_open_burst=20)


async def allowed(limits: RateLimits, name: str, client: str) -> bool:
    try:
        await limits.check(name, client)
    except ApiError as refused:
        assert refused.status == 429 and "Retry-After" in (refused.headers or {})
        return False
    return True


async def test_two_tasks_count_a_client_once_and_share_its_bar(redis_url: str) -> None:
    backends = [RedisBackend(redis_url, 0.25, 5.0) for _ in range(2)]
    tasks = [RateLimits(LIMITS) for _ in range(2)]
    for task, backend in zip(tasks, backends, strict=True):
        task.share(backend)
    try:
        # One burst between them, whichever task each request reaches.
        answers = [await allowed(tasks[i % 2], "search", "198.51.100.7") for i in range(12)]
        assert answers == [True] * 5 + [False] * 7
        # Another client has its own bucket.
        assert await allowed(tasks[1], "search", "198.51.100.8")
        # A bar set by one task holds in the other, which never saw the flood.
        assert await allowed(tasks[1], "ws_open", "203.0.113.9")
        tasks[0].bar("ws_open", "203.0.113.9", 30)
        for _ in range(100):
            if not await allowed(tasks[1], "ws_open", "203.0.113.9"):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the bar set by one task never reached the other")
    finally:
        for backend in backends:
            await backend.close()


@pytest.fixture(name="silent_redis")
def _silent_redis() -> Iterator[str]:
    """A port that accepts connections and never answers: every Redis call runs into its timeout."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


async def test_without_redis_each_task_limits_on_its_own_without_waiting(silent_redis: str) -> None:
    backend = RedisBackend(silent_redis, 0.25, 5.0)
    limits = RateLimits(LIMITS)
    limits.share(backend)
    try:
        started = time.monotonic()
        answers = [await allowed(limits, "search", "198.51.100.7") for _ in range(20)]
        elapsed = time.monotonic() - started
        # The process's own bucket: limited, never unlimited, never an error...
        assert answers == [True] * 5 + [False] * 15
        # ...and the first timeout pauses Redis, instead of every request waiting for one (twenty
        # waits of the Redis timeout would far outlast the bound below).
        assert elapsed < 2.5, elapsed
        limits.bar("ws_open", "203.0.113.9", 30)  # held in this task even so
        assert not await allowed(limits, "ws_open", "203.0.113.9")
    finally:
        await backend.close()
