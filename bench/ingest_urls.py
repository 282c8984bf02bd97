"""Ingest benchmark, URL mode: a catalog whose photos sit behind a local HTTP server that adds
latency to every answer, imported with ``prethrift ingest``'s pipeline (fetch, store through the
upsert) while the embedding worker runs beside it, from the start of the import until every
photo is embedded; against the model alone on the same photos, in the same run.

    .venv/bin/python -m bench.ingest_bench --urls                      # 96 photos, 50 ms latency
    .venv/bin/python -m bench.ingest_bench --urls --images 2048 --latency-ms 100   # on a GPU machine

Fetching must overlap embedding for the import to keep the model busy: the ratio end to end /
model alone is the figure (goal >= 0.8).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from aiohttp import web
from pydantic import SecretStr

from webapp.adapters.db import EmbeddedPostgres
from webapp.config import ClipSettings, DatabaseSettings, ImportSettings, Settings, WorkerSettings
from webapp.embedding.decoder import Decoder
from webapp.embedding.embedder import load_clip
from webapp.imports.pipeline import import_file
from webapp.runtime import open_services, run_worker

ROOT = Path(__file__).resolve().parent


async def _photo_server(data: list[bytes], latency_s: float) -> tuple[web.AppRunner, int]:
    async def serve(request: web.Request) -> web.Response:
        await asyncio.sleep(latency_s)
        return web.Response(body=data[int(request.match_info["n"])], content_type="image/jpeg")

    app = web.Application()
    app.router.add_get("/photo/{n}.jpg", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port: int = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port


async def run_urls(args: argparse.Namespace, data: list[bytes]) -> dict[str, Any]:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    clip_settings = ClipSettings(model=args.model, pretrained="none", device=device)
    clip = load_clip(clip_settings)
    worker = WorkerSettings(batch_size=args.batch, gpu_batch_size=args.gpu_batch, poll_interval_s=0.05)
    batch = worker.gpu_batch_size if device == "cuda" else worker.batch_size
    report: dict[str, Any] = {
        "mode": "urls",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name() if device == "cuda" else f"cpu x{os.cpu_count()}",
        "model": args.model,
        "images": len(data),
        "latency_ms": args.latency_ms,
        "batch": batch,
    }
    decoder = Decoder(clip, worker.decode_processes)
    batches = []
    for start in range(0, len(data), batch):
        decoded = await decoder.decode(data[start : start + batch])
        assert decoded.pixels is not None
        batches.append(decoded.pixels)
    clip.encode_pixels(batches[0])  # warm-up

    def model_alone() -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for pixels in batches:
            clip.encode_pixels(pixels)
        if device == "cuda":
            torch.cuda.synchronize()
        return len(data) / (time.perf_counter() - started)

    runner, port = await _photo_server(data, args.latency_ms / 1000)
    postgres = EmbeddedPostgres(ROOT / ".data" / "postgres", database="bench_ingest_urls")
    dsn = postgres.start()
    model_rates: list[float] = []
    e2e_rates: list[float] = []
    try:
        for round_ in range(args.rounds):
            model_rates.append(model_alone())
            with tempfile.TemporaryDirectory() as folder:
                settings = Settings(
                    data_dir=Path(folder),
                    database=DatabaseSettings(url=SecretStr(dsn), pool_max=10),
                    clip=clip_settings,
                    worker=worker,
                    imports=ImportSettings(allowed_hosts=f"127.0.0.1:{port}", concurrency=args.concurrency),
                )
                catalog = Path(folder) / "catalog.csv"
                rows = [
                    f"r{round_}-{n},Item {n},10,http://127.0.0.1:{port}/photo/{n}.jpg" for n in range(len(data))
                ]
                catalog.write_text("external_id,title,price,images\n" + "\n".join(rows) + "\n")
                async with open_services(settings, clip) as services:
                    async with services.pool.acquire() as connection:
                        await connection.execute("TRUNCATE items, import_listings, import_sources CASCADE")
                    stop = asyncio.Event()
                    started = time.perf_counter()
                    embedding = asyncio.create_task(run_worker(services, stop))
                    summary = await import_file(services, catalog, None, progress=False, report=lambda _: None)
                    assert summary.loaded == len(data), summary.lines()
                    while True:
                        async with services.pool.acquire() as connection:
                            left = await connection.fetchval(
                                "SELECT count(*) FROM embedding_jobs WHERE status <> 'done'"
                            )
                        if not left:
                            break
                        await asyncio.sleep(0.05)
                    e2e_rates.append(len(data) / (time.perf_counter() - started))
                    stop.set()
                    await embedding
    finally:
        postgres.stop()
        await runner.cleanup()
    report["model_only_images_per_s_rounds"] = [round(r, 2) for r in model_rates]
    report["end_to_end_images_per_s_rounds"] = [round(r, 2) for r in e2e_rates]
    report["model_only_images_per_s"] = round(max(model_rates), 2)
    report["end_to_end_images_per_s"] = round(max(e2e_rates), 2)
    report["ratio_end_to_end_to_model"] = round(max(e2e_rates) / max(model_rates), 3)
    report["load_average_1m"] = round(os.getloadavg()[0], 2)
    met = report["ratio_end_to_end_to_model"] >= 0.8
    report["target"] = f"end_to_end >= 0.8 x model alone: {'PASS' if met else 'MISS'}"
    return report
