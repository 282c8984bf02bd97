from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from quart import Quart
from quart.datastructures import FileStorage
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from tests.conftest import ADMIN_TOKEN
from webapp.app import create_app
from webapp.config import Settings
from webapp.embedding.embedder import ClipModel
from webapp.embedding.worker import EmbeddingWorker
from webapp.items.demo import COLOURS, KINDS, PATTERNS, draw_garment
from webapp.observability.metrics_store import MetricsRecorder
from webapp.services import Services


def photo(seed: int) -> bytes:
    """A distinct garment photo per seed."""
    colours = list(COLOURS)
    return draw_garment(
        KINDS[seed % len(KINDS)],
        colours[(seed // len(KINDS)) % len(colours)],
        PATTERNS[seed % len(PATTERNS)],
        seed,
    )


def tree_cpu_s(pid: int) -> float:
    """CPU seconds used so far by a process and its living descendants."""
    total = 0.0
    root = psutil.Process(pid)
    for one in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):  # a process that ended meanwhile
            times = one.cpu_times()
            total += times.user + times.system
    return total


def listing(**overrides: str) -> dict[str, str]:
    fields = {
        "title": "Faded denim jacket",
        "description": "Classic trucker cut, light wash.",
        "brand": "Levi's",
        "category": "outerwear",
        "size": "M",
        "colour": "denim blue",
        "condition": "good",
        "price": "34.50",
        "currency": "USD",
    }
    fields.update(overrides)
    return fields


def image_file(data: bytes, filename: str = "photo.jpg", content_type: str = "image/jpeg") -> FileStorage:
    return FileStorage(io.BytesIO(data), filename=filename, content_type=content_type)


async def upload(
    client: QuartClient,
    data: bytes,
    headers: dict[str, str] | None,
    filename: str = "photo.jpg",
    **fields: str,
) -> Any:
    return await client.post(
        "/api/items",
        form=listing(**fields),
        files={"image": image_file(data, filename)},
        headers=Headers(headers or {}),
    )


def service_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a `prethrift` subprocess needs to use this test's services."""
    assert settings.database.url and settings.redis.url and settings.storage.bucket
    env = {
        **os.environ,
        "DATABASE_URL": settings.database.url.get_secret_value(),
        "REDIS_URL": settings.redis.url.get_secret_value(),
        "IMAGES_BUCKET": settings.storage.bucket,
        "AWS_ENDPOINT_URL": settings.storage.endpoint_url or "",
        "PRETHRIFT_ADMIN_TOKEN": ADMIN_TOKEN,
        "PRETHRIFT_CLIP_MODEL": "prethrift-tiny",
        "PRETHRIFT_CLIP_PRETRAINED": "none",
        "PRETHRIFT_DATA_DIR": str(settings.data_dir),
    }
    env.update(extra)
    return env


@contextlib.contextmanager
def serve_subprocess(
    settings: Settings, log_path: Path, ready_within_s: float = 90, **extra_env: str
) -> Iterator[tuple[str, int]]:
    """`prethrift serve` as production starts it; yields its base URL and process id once ready."""
    from webapp.adapters.cache import free_port

    port = free_port()
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "serve"],
            env=service_env(settings, PRETHRIFT_PORT=str(port), **extra_env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + ready_within_s
        while time.monotonic() < deadline:
            assert process.poll() is None, log_path.read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"server did not become ready in {ready_within_s:g} s")
        yield base, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
            tail = log_path.read_text()[-2000:]
            raise AssertionError(f"server did not stop within 30 s of SIGTERM: {tail}") from None


async def run_worker_until_idle(app: Quart, recorder: MetricsRecorder | None, polls: int = 400) -> None:
    """Run the real worker loop (which records its metrics) until nothing is pending."""
    s = services_of(app)
    worker = EmbeddingWorker(s.pool, s.embedder, s.storage, s.settings.worker, recorder)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    for _ in range(polls):
        async with s.pool.acquire() as connection:
            if not await connection.fetchval("SELECT count(*) FROM items WHERE status = 'pending'"):
                break
        await asyncio.sleep(0.05)
    stop.set()
    await running


def services_of(app: Quart) -> Services:
    found: Services = app.extensions["prethrift"]
    return found


async def wait_ready(app: Quart) -> None:
    services = services_of(app)
    for _ in range(500):
        if services.queries is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("warm-up did not finish")


@pytest.fixture(name="app")
async def _app(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[Quart]:
    app = create_app(settings, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        yield app


@pytest.fixture(name="client")
def _client(app: Quart) -> QuartClient:
    return app.test_client()


@pytest.fixture(name="worker")
def _worker(app: Quart, settings: Settings) -> EmbeddingWorker:
    s = services_of(app)
    return EmbeddingWorker(s.pool, s.embedder, s.storage, settings.worker)


def unsigned(item: dict[str, Any]) -> dict[str, Any]:
    """An item as the catalog holds it: its photo URL is presigned anew, to the second, on every
    answer, so two answers a second apart differ only in the signature."""
    return {**item, "image_url": str(item["image_url"]).split("?", 1)[0]}
