"""Switching the served model without downtime: reembed, a worker on the new key, a new API,
retire the old key; and `prethrift models --json` agrees with the database throughout."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import torch
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import image_file, photo, service_env, upload
from tests.webapp.helpers import prethrift
from webapp.adapters.db import vector_index_name
from webapp.app import create_app
from webapp.config import Settings
from webapp.embedding.embedder import ClipModel, load_clip
from webapp.embedding.worker import EmbeddingWorker

OLD = "prethrift-tiny/random-seed0"
NEW = "prethrift-tiny/file-tiny-b.pt"


@pytest.fixture(name="new_weights")
def _new_weights(tiny_clip: ClipModel, tmp_path: Path) -> Path:
    """Other weights for the same architecture: another model key, other vectors."""
    generator = torch.Generator().manual_seed(1)
    state = {
        name: value + 0.05 * torch.randn(value.shape, generator=generator)
        if value.is_floating_point()
        else value
        for name, value in tiny_clip.model.state_dict().items()
    }
    path = tmp_path / "tiny-b.pt"
    torch.save(state, path)
    return path


async def query(settings: Settings, sql: str, *args: Any) -> list[asyncpg.Record]:
    assert settings.database.url
    connection = await asyncpg.connect(settings.database.url.get_secret_value())
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


async def models_json(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    result = await asyncio.to_thread(prethrift, "models", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {m["model_key"]: m for m in json.loads(result.stdout)}


async def assert_models_match_database(settings: Settings, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    listed = await models_json(env)
    registered = await query(
        settings, "SELECT model_key, retired_at IS NOT NULL AS retired FROM embedding_models"
    )
    assert set(listed) == {r["model_key"] for r in registered}
    total = (await query(settings, "SELECT count(*) FROM items WHERE status IN ('pending', 'ready')"))[0][0]
    for key, shown in listed.items():
        embedded = (
            await query(
                settings,
                """SELECT count(*) FROM item_embeddings e JOIN items i ON i.id = e.item_id
                   WHERE e.model_key = $1 AND i.status IN ('pending', 'ready')""",
                key,
            )
        )[0][0]
        assert (shown["embedded"], shown["total"]) == (embedded, total), key
        assert shown["coverage"] == pytest.approx(embedded / total if total else 1.0, abs=1e-6)
        assert 0.0 <= shown["coverage"] <= 1.0
    return listed


async def full_page(client: QuartClient, text: str) -> None:
    response = await client.get(f"/api/search?q={text}&limit=5")
    assert response.status_code == 200, await response.get_data()
    body = await response.get_json()
    assert len(body["items"]) == 5


async def found_by_own_photo(client: QuartClient, item_id: int, seed: int) -> bool:
    response = await client.post("/api/search/image?limit=1", files={"image": image_file(photo(seed))})
    assert response.status_code == 200
    return bool([hit["id"] for hit in (await response.get_json())["items"]] == [item_id])


async def test_switch_models_without_downtime_then_retire_the_old_key(
    settings: Settings, tiny_clip: ClipModel, new_weights: Path, auth: dict[str, str]
) -> None:
    env_old = service_env(settings)
    env_new = service_env(settings, PRETHRIFT_CLIP_PRETRAINED=str(new_weights))
    seeds: dict[int, int] = {}

    old_app = create_app(settings, clip=tiny_clip)
    old_running = old_app.test_app()
    await old_running.startup()
    old_app_stopped = False
    try:
        await _wait_for_model(old_app)
        client = old_app.test_client()
        old_services = old_app.extensions["prethrift"]
        old_worker = EmbeddingWorker(
            old_services.pool, old_services.embedder, old_services.storage, settings.worker
        )
        for seed in range(10):
            seeds[(await (await upload(client, photo(seed), auth)).get_json())["id"]] = seed
        assert await old_worker.drain() == 10
        await full_page(client, "jacket")

        # 1. Register the new key and queue its backfill (idempotent).
        first = await asyncio.to_thread(prethrift, "reembed", env=env_new)
        assert first.returncode == 0, first.stderr
        assert f"model key {NEW}: queued 10 job(s)" in first.stdout
        again = await asyncio.to_thread(prethrift, "reembed", env=env_new)
        assert f"model key {NEW}: queued 0 job(s)" in again.stdout
        listed = await assert_models_match_database(settings, env_old)
        assert listed[OLD]["state"] == "serving" and listed[OLD]["coverage"] == 1.0
        assert listed[NEW]["state"] == "backfilling" and listed[NEW]["coverage"] == 0.0

        # 2. An API started on the new key now would serve a half-built index: not ready.
        new_clip = await asyncio.to_thread(
            load_clip, settings.clip.model_copy(update={"pretrained": str(new_weights)})
        )
        strict = settings.model_copy(
            update={
                "require_full_index": True,
                # Its catalog was listed seconds ago: count every listing, however recent.
                "ready_max_backlog_age_s": 0.0,
                "metrics": settings.metrics.model_copy(update={"replica": "api-new"}),
                # It finds all 13 items by their own photos in a row, from one address.
                "limits": settings.limits.model_copy(
                    update={"photo_search_per_s": 100.0, "photo_search_burst": 100}
                ),
            }
        )
        early = create_app(strict, clip=new_clip)
        async with early.test_app():
            await _wait_for_model(early)
            ready = await early.test_client().get("/readyz")
            assert ready.status_code == 503
            assert "covers 0.0% (0 of 10 items)" in (await ready.get_json())["error"]["message"]

        # 3. A worker on the new key backfills while the old API serves complete pages, and
        #    uploads made meanwhile are queued for both keys.
        new_worker = subprocess.Popen(
            [sys.executable, "-m", "webapp.cli", "worker"],
            env=env_new,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            during = []
            for step in range(600):
                await full_page(client, ["jacket", "red dress", "denim"][step % 3])
                if step % 40 == 0 and len(during) < 3:
                    seed = 100 + len(during)
                    item_id = (await (await upload(client, photo(seed), auth)).get_json())["id"]
                    seeds[item_id] = seed
                    during.append(item_id)
                    await old_worker.drain()
                covered = await query(
                    settings, "SELECT count(*) FROM item_embeddings WHERE model_key = $1", NEW
                )
                if len(during) == 3 and covered[0][0] == 13:
                    break
                await asyncio.sleep(0.05)
            keys = await query(
                settings,
                "SELECT item_id, array_agg(model_key ORDER BY model_key) AS keys FROM item_embeddings "
                "WHERE item_id = ANY($1::bigint[]) GROUP BY item_id",
                during,
            )
            assert {r["item_id"]: r["keys"] for r in keys} == {i: [NEW, OLD] for i in during}
        finally:
            new_worker.terminate()
            _, errors = new_worker.communicate(timeout=30)
        assert new_worker.returncode == 0, errors[-2000:]
        listed = await assert_models_match_database(settings, env_old)
        assert listed[NEW]["coverage"] == 1.0 and listed[NEW]["embedded"] == 13

        # 4. The new API is ready at once, and finds every item by its own photo.
        new_app = create_app(strict, clip=new_clip)
        async with new_app.test_app():
            await _wait_for_model(new_app)
            new_client = new_app.test_client()
            assert (await new_client.get("/readyz")).status_code == 200
            for item_id, seed in seeds.items():
                assert await found_by_own_photo(new_client, item_id, seed), item_id

            # 5. The old key cannot be retired while the old API serves it...
            refused = await asyncio.to_thread(prethrift, "retire", OLD, env=env_new)
            assert refused.returncode == 1 and "being served" in refused.stderr
            assert (await query(settings, "SELECT count(*) FROM item_embeddings WHERE model_key = $1", OLD))[0][
                0
            ]

            await old_running.shutdown()
            old_app_stopped = True

            # ...and once it stopped, retiring removes its vectors, index and jobs.
            retired = await asyncio.to_thread(prethrift, "retire", OLD, env=env_new)
            assert retired.returncode == 0, retired.stderr
            assert "deleted 13 embedding(s)" in retired.stdout
            assert not (await query(settings, "SELECT 1 FROM item_embeddings WHERE model_key = $1", OLD))
            assert not (await query(settings, "SELECT 1 FROM embedding_jobs WHERE model_key = $1", OLD))
            index = await query(settings, "SELECT to_regclass($1) IS NULL AS gone", vector_index_name(OLD))
            assert index[0]["gone"]
            listed = await assert_models_match_database(settings, env_new)
            assert listed[OLD]["state"] == "retired" and listed[OLD]["embedded"] == 0
            assert listed[NEW]["state"] == "serving"

            # The new API keeps answering, and new uploads are queued for the new key only.
            await full_page(new_client, "jacket")
            late = (await (await upload(new_client, photo(200), auth)).get_json())["id"]
            queued = await query(settings, "SELECT model_key FROM embedding_jobs WHERE item_id = $1", late)
            assert [r["model_key"] for r in queued] == [NEW]
    finally:
        if not old_app_stopped:
            await old_running.shutdown()


async def _wait_for_model(app: Quart) -> None:
    for _ in range(500):
        if app.extensions["prethrift"].queries is not None:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("warm-up did not finish")


async def test_a_pending_item_says_when_no_worker_runs_for_its_model(
    app: Quart, client: QuartClient, worker: EmbeddingWorker, auth: dict[str, str]
) -> None:
    item = (await (await upload(client, photo(3), auth)).get_json())["id"]
    body = await (await client.get(f"/api/items/{item}", headers=auth)).get_json()
    assert body["status"] == "pending"
    assert f"waiting for an embedding worker for model {OLD}; none is running" in body["pending_reason"]

    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))  # its heartbeat says it serves the key
    try:
        for _ in range(200):
            body = await (await client.get(f"/api/items/{item}", headers=auth)).get_json()
            if body["status"] == "ready":
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
    assert body["status"] == "ready" and body["pending_reason"] is None
