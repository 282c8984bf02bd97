from __future__ import annotations

import asyncio
import contextlib
import io
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import psutil
import pytest
from hypercorn.asyncio import serve
from hypercorn.config import Config
from pydantic import SecretStr
from quart import Quart
from quart.datastructures import FileStorage
from quart.testing import QuartClient
from werkzeug.datastructures import Headers

from tests.conftest import ADMIN_TOKEN, TINY, scratch_database
from webapp.adapters.cache import free_port
from webapp.app import create_app
from webapp.config import DatabaseSettings, RedisSettings, Settings, StorageSettings, SuggestSettings
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


@pytest.fixture(name="big_app")
async def _big_app(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[Quart]:
    # A low exact-scan threshold so a 3,000-item catalog exercises both filtered plans.
    tuned = settings.model_copy(
        update={"database": settings.database.model_copy(update={"exact_scan_max_rows": 100})}
    )
    app = create_app(tuned, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        yield app


@pytest.fixture(name="live")
async def _live(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[tuple[Quart, str]]:
    """The app behind a real Hypercorn socket on loopback. Every search comes from this one
    address, so one client's search teaches a suggestion here (test_fair_share holds the number
    of clients a suggestion needs)."""
    app = create_app(settings.model_copy(update={"suggest": SuggestSettings(min_clients=1)}), clip=tiny_clip)
    port = free_port()
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    server = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    base = f"127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=f"http://{base}") as http:
        for _ in range(300):
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/readyz")).status_code == 200:
                    break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the live server did not become ready")
    yield app, base
    stop.set()
    await server


@dataclass
class Served:
    base: str
    pid: int
    host: str
    port: int
    database_url: str


@pytest.fixture(name="edge_server", scope="session")
async def _edge_server(
    postgres_dsn: str,
    template_db: str,
    redis_server: Any,
    s3_endpoint: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Served]:
    """One `prethrift serve` for every test at the edge (its start-up is most of each test's
    cost; the tests speak as different client addresses), behind one trusted proxy hop, with the
    inline worker embedding uploads."""
    tmp = tmp_path_factory.mktemp("edge")
    bucket = "prethrift-edge-" + uuid.uuid4().hex[:10]
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    async with scratch_database(postgres_dsn, "edge_", template_db) as database_url:
        settings = Settings(
            admin_token=SecretStr(ADMIN_TOKEN),
            data_dir=tmp / "data",
            database=DatabaseSettings(url=SecretStr(database_url)),
            redis=RedisSettings(url=SecretStr(redis_server.url)),
            storage=StorageSettings(bucket=bucket, endpoint_url=s3_endpoint),
            clip=TINY,
        )
        with serve_subprocess(
            settings,
            tmp / "server.log",
            PRETHRIFT_LIMITS_TRUSTED_PROXIES="1",
            PRETHRIFT_WORKER_INLINE="true",
        ) as (base, pid):
            port = int(base.rsplit(":", 1)[1])
            yield Served(base, pid, "127.0.0.1", port, database_url)


@pytest.fixture(name="photo_server")
def _photo_server(settings: Settings, tmp_path: Path) -> Iterator[tuple[str, int]]:
    # One client may search photos 8 at once; X-Forwarded-For from the test names the client.
    with serve_subprocess(
        settings,
        tmp_path / "server.log",
        PRETHRIFT_LIMITS_TRUSTED_PROXIES="1",
        PRETHRIFT_LIMITS_PHOTO_SEARCH_BURST="8",
        PRETHRIFT_LIMITS_PHOTO_SEARCH_PER_S="0.01",
        PRETHRIFT_LIMITS_DECODE_WAIT_S="60",
        # What is measured is the decode budget: one client may have all its photos in flight.
        PRETHRIFT_LIMITS_PHOTO_SEARCH_CONCURRENCY="16",
    ) as server:
        yield server
