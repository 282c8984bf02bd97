"""Per-client token buckets and bars kept in Redis, so that every task behind the load balancer
counts one client's requests together.

A bucket is GCRA (the generic cell rate algorithm): one number per client, the time at which its
bucket would be full again, read and moved in one Lua script, so a check is one round trip and
two tasks can never both spend the client's last token. The time comes from Redis (``TIME``),
not from the tasks, whose clocks may differ. A bar is a key that expires when the bar ends; the
same script looks at it first, so a barred client costs no more than any other.

Keys: ``rl:<limit>:<client>`` (the bucket) and ``bar:<limit>:<client>`` (the bar). Both expire on
their own once they no longer matter (a full bucket, an ended bar), so idle clients cost nothing.
"""

from __future__ import annotations

import math

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

from webapp.adapters.cache import RedisBackend

# KEYS[1]: the bucket, KEYS[2]: the bar; ARGV[1]: milliseconds per token, ARGV[2]: burst.
# Returns 0 when the request may go ahead, else the milliseconds until it may.
_TAKE = """
local barred = redis.call('PTTL', KEYS[2])
if barred > 0 then return barred end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + tonumber(time[2]) / 1000
local interval = tonumber(ARGV[1])
local full_at = tonumber(redis.call('GET', KEYS[1])) or now
if full_at < now then full_at = now end
local next_full_at = full_at + interval
local allowed_at = next_full_at - interval * tonumber(ARGV[2])
if allowed_at > now then return math.max(1, math.ceil(allowed_at - now)) end
local ttl = math.max(1, math.ceil(next_full_at - now))
redis.call('SET', KEYS[1], string.format('%.3f', next_full_at), 'PX', ttl)
return 0
"""


class SharedBuckets:
    """Token buckets and bars in Redis, through the cache's client, its timeout and its pause after
    a failure. Every call raises ``RedisUnavailable`` when Redis cannot answer; the caller then
    falls back to its own per-process buckets."""

    def __init__(self, backend: RedisBackend) -> None:
        self.backend = backend
        self._take: AsyncScript = backend.client.register_script(_TAKE)

    async def take(self, name: str, client: str, rate: float, burst: int) -> float:
        """Take one of ``client``'s ``name`` tokens: 0.0 when allowed, else the seconds to wait."""

        async def run(redis: aioredis.Redis) -> float:
            waited = await self._take(
                keys=[f"rl:{name}:{client}", f"bar:{name}:{client}"], args=[1000.0 / rate, burst], client=redis
            )
            return int(waited) / 1000.0

        return await self.backend.execute("limit", run)

    async def bar(self, name: str, client: str, seconds: float) -> None:
        """Refuse ``client``'s ``name`` requests in every task for ``seconds``."""
        milliseconds = math.ceil(seconds * 1000)
        if milliseconds <= 0:
            return

        async def run(redis: aioredis.Redis) -> None:
            await redis.set(f"bar:{name}:{client}", b"1", px=milliseconds)

        await self.backend.execute("bar", run)
