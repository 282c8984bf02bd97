"""The embedding pipeline is durable: nothing accepted is lost, nothing is embedded twice."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import boto3
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import photo, services_of, upload, wait_ready
from webapp.config import Settings
from webapp.embedding.worker import EmbeddingWorker


async def job_rows(app: Quart) -> list[dict[str, object]]:
    async with services_of(app).pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT item_id, status, attempts, last_error FROM embedding_jobs ORDER BY id"
        )
    return [dict(r) for r in rows]


async def embedding_count(app: Quart) -> int:
    async with services_of(app).pool.acquire() as connection:
        count: int = await connection.fetchval("SELECT count(*) FROM item_embeddings")
    return count


async def test_worker_killed_between_claim_and_commit_loses_and_doubles_nothing(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, settings: Settings, auth: dict[str, str]
) -> None:
    ids = [(await (await upload(client, photo(s), auth)).get_json())["id"] for s in range(3)]
    assert settings.database.url and settings.storage.bucket
    env = {
        **os.environ,
        "DATABASE_URL": settings.database.url.get_secret_value(),
        "IMAGES_BUCKET": settings.storage.bucket,
        "AWS_ENDPOINT_URL": settings.storage.endpoint_url or "",
        "PRETHRIFT_CLIP_MODEL": settings.clip.model,
        "PRETHRIFT_CLIP_PRETRAINED": settings.clip.pretrained,
        "PRETHRIFT_WORKER_BATCH_SIZE": "8",
        "PRETHRIFT_WORKER_LEASE_S": "1",
        "PRETHRIFT_ADMIN_TOKEN": "x" * 20,
    }
    env.pop("REDIS_URL", None)
    crashed = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tests.webapp.crash_worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert crashed.returncode == -9, crashed.stderr[-2000:]
    assert "claimed 3 jobs" in crashed.stdout

    # The attempt was committed before the work: all three are queued, one attempt spent,
    # and leased to the dead worker for a second.
    assert [(r["status"], r["attempts"]) for r in await job_rows(app)] == [("queued", 1)] * 3
    assert await embedding_count(app) == 0

    embedded = 0
    for _ in range(100):  # until the dead worker's lease has run out
        embedded += await worker.drain()
        if embedded == 3:
            break
        await asyncio.sleep(0.05)
    assert embedded == 3
    assert [(r["status"], r["attempts"]) for r in await job_rows(app)] == [("done", 2)] * 3
    assert await embedding_count(app) == 3
    for item_id in ids:
        assert (await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json())["status"] == "ready"


async def test_concurrent_workers_split_the_queue_without_overlap(
    app: Quart, client: QuartClient, settings: Settings, auth: dict[str, str]
) -> None:
    for s in range(12):
        await upload(client, photo(s), auth)
    s = services_of(app)
    small = settings.worker.model_copy(update={"batch_size": 2})
    workers = [EmbeddingWorker(s.pool, s.embedder, s.storage, small) for _ in range(3)]
    done = await asyncio.gather(*(w.drain() for w in workers))
    assert sum(done) == 12
    assert await embedding_count(app) == 12
    assert all(r["status"] == "done" and r["attempts"] == 1 for r in await job_rows(app))


async def test_missing_image_is_retried_then_failed_with_the_reason(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, settings: Settings, auth: dict[str, str]
) -> None:
    good = (await (await upload(client, photo(1), auth)).get_json())["id"]
    lost = (await (await upload(client, photo(2), auth)).get_json())["id"]
    async with services_of(app).pool.acquire() as connection:
        key = await connection.fetchval("SELECT image_key FROM items WHERE id = $1", lost)
    boto3.client("s3", endpoint_url=settings.storage.endpoint_url, region_name="us-east-1").delete_object(
        Bucket=settings.storage.bucket, Key=key
    )

    first = await worker.process_batch()
    assert (first.embedded, first.retried, first.failed) == (1, 1, 0)
    status = await (await client.get(f"/api/items/{lost}", headers=auth)).get_json()
    assert status["status"] == "pending"

    # backoff_base_s is 0 in tests, so each retry is due at once; max_attempts is 3.
    second = await worker.process_batch()
    third = await worker.process_batch()
    assert (second.retried, third.failed) == (1, 1)
    assert (await worker.process_batch()).total == 0

    status = await (await client.get(f"/api/items/{lost}", headers=auth)).get_json()
    assert status["status"] == "failed"
    assert "after 3 attempts" in status["failure_reason"] and "image" in status["failure_reason"]
    assert (await (await client.get(f"/api/items/{good}", headers=auth)).get_json())["status"] == "ready"


async def test_backoff_delays_the_retry(
    app: Quart, client: QuartClient, settings: Settings, auth: dict[str, str]
) -> None:
    item = (await (await upload(client, photo(5), auth)).get_json())["id"]
    async with services_of(app).pool.acquire() as connection:
        await connection.execute(
            "UPDATE item_photos SET image_key = 'items/missing.jpg' WHERE item_id = $1", item
        )
    s = services_of(app)
    slow = EmbeddingWorker(
        s.pool, s.embedder, s.storage, settings.worker.model_copy(update={"backoff_base_s": 60})
    )
    assert (await slow.process_batch()).retried == 1
    assert (await slow.process_batch()).total == 0  # not due for another minute
    async with s.pool.acquire() as connection:
        wait = await connection.fetchval(
            "SELECT run_after - now() FROM embedding_jobs WHERE item_id = $1", item
        )
    assert 50 < wait.total_seconds() <= 60


async def test_inline_worker_wakes_on_upload(
    settings: Settings, tiny_clip: object, auth: dict[str, str]
) -> None:
    from webapp.app import create_app

    # A 30 s poll interval: only the NOTIFY sent with the upload can make it ready in time.
    woken = settings.worker.model_copy(update={"inline": True, "poll_interval_s": 30.0})
    inline = settings.model_copy(update={"worker": woken})
    app = create_app(inline, clip=tiny_clip)  # type: ignore[arg-type]
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        item = (await (await upload(client, photo(8), auth)).get_json())["id"]
        for _ in range(200):
            body = await (await client.get(f"/api/items/{item}", headers=auth)).get_json()
            if body["status"] == "ready":
                break
            await asyncio.sleep(0.02)
        assert body["status"] == "ready"


async def test_a_photo_that_kills_the_worker_fails_alone_after_max_attempts(
    app: Quart, client: QuartClient, settings: Settings, auth: dict[str, str]
) -> None:
    ids = [(await (await upload(client, photo(s), auth)).get_json())["id"] for s in range(5)]
    poison_id = ids[2]
    async with services_of(app).pool.acquire() as connection:
        poison_key = await connection.fetchval("SELECT image_key FROM items WHERE id = $1", poison_id)
    assert settings.database.url and settings.storage.bucket
    env = {
        **os.environ,
        "DATABASE_URL": settings.database.url.get_secret_value(),
        "IMAGES_BUCKET": settings.storage.bucket,
        "AWS_ENDPOINT_URL": settings.storage.endpoint_url or "",
        "PRETHRIFT_CLIP_MODEL": settings.clip.model,
        "PRETHRIFT_CLIP_PRETRAINED": settings.clip.pretrained,
        "PRETHRIFT_WORKER_BATCH_SIZE": "8",
        "PRETHRIFT_WORKER_MAX_ATTEMPTS": "3",
        "PRETHRIFT_WORKER_BACKOFF_BASE_S": "0",
        "PRETHRIFT_WORKER_LEASE_S": "0.5",
        "PRETHRIFT_ADMIN_TOKEN": "x" * 20,
        "CRASH_ON_IMAGE_KEY": poison_key,
    }
    env.pop("REDIS_URL", None)

    # Restart the worker whenever it dies, as ECS or systemd would, until it finishes cleanly.
    deaths = 0
    for _ in range(10):
        run = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "tests.webapp.crash_worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if run.returncode == 0:
            break
        assert run.returncode == -9, run.stderr[-2000:]
        assert f"dying on {poison_key}" in run.stdout
        deaths += 1
        await asyncio.sleep(0.6)  # the dead worker's lease runs out
    assert run.returncode == 0, "the worker kept dying on the same photo"
    assert deaths == 3  # one death per attempt, then the photo is failed, not retried forever

    for item_id in ids:
        body = await (await client.get(f"/api/items/{item_id}", headers=auth)).get_json()
        if item_id == poison_id:
            assert body["status"] == "failed"
            assert "the worker died while embedding this photo (3 attempts)" in body["failure_reason"]
        else:
            assert body["status"] == "ready", body  # its batch-mates were not held back
    rows = {r["item_id"]: r for r in await job_rows(app)}
    assert rows[poison_id]["status"] == "failed" and rows[poison_id]["attempts"] == 3
    assert await embedding_count(app) == 4
