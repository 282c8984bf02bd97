"""The console's database access: an asyncpg pool on a loop of its own.

Dash callbacks are synchronous and run on the web server's threads; the data functions in
``console.data`` are async. :meth:`MetricsDatabase.run` is the one bridge between the two.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg

P = ParamSpec("P")
R = TypeVar("R")


class MetricsDatabase:
    def __init__(self, dsn: str, *, max_size: int = 4, timeout_s: float = 15.0) -> None:
        self.dsn = dsn
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="console-db", daemon=True)
        self._thread.start()
        self._pool: asyncpg.Pool | None = None
        self._opening = threading.Lock()

    def _submit(self, coroutine: Coroutine[Any, Any, R]) -> Future[R]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def _open_pool(self) -> asyncpg.Pool:
        with self._opening:
            if self._pool is None:

                async def create() -> asyncpg.Pool:
                    return await asyncpg.create_pool(self.dsn, min_size=1, max_size=self.max_size)

                self._pool = self._submit(create()).result(self.timeout_s)
            return self._pool

    def run(
        self,
        fn: Callable[Concatenate[asyncpg.Connection, P], Awaitable[R]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> R:
        """Call ``fn(connection, *args)`` with a pooled connection and wait for its result."""
        pool = self._open_pool()

        async def call() -> R:
            async with pool.acquire() as connection:
                return await fn(connection, *args, **kwargs)

        return self._submit(call()).result(self.timeout_s)

    def close(self) -> None:
        if self._pool is not None:
            self._submit(self._pool.close()).result(self.timeout_s)
            self._pool = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> MetricsDatabase:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
