"""Reads go to a real streaming replica only when it has replayed the catalog version they serve."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.webapp.adapters.conftest import ReplicaCluster
from tests.webapp.conftest import photo, run_worker_until_idle, services_of, upload, wait_ready
from webapp.adapters.db import create_pool, migrate
from webapp.adapters.replica import ReadPools
from webapp.app import create_app
from webapp.config import DatabaseSettings, Settings
from webapp.embedding.embedder import ClipModel


async def _in_recovery(connection: asyncpg.Connection) -> bool:
    """True on the standby, False on the primary: where a read ran."""
    found: bool = await connection.fetchval("SELECT pg_is_in_recovery()")
    return found


async def _version(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as connection:
        version: int = await connection.fetchval("SELECT version FROM catalog_state WHERE id = 1")
    return version


async def _bump(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as connection:
        version: int = await connection.fetchval(
            "UPDATE catalog_state SET version = version + 1 WHERE id = 1 RETURNING version"
        )
    return version


async def _caught_up(reads: ReadPools, version: int) -> None:
    async with asyncio.timeout(20):
        while reads.replica_version is None or reads.replica_version < version:
            await asyncio.sleep(0.05)
            await reads.check()


@pytest.fixture(name="pools")
async def _pools(replica_cluster: ReplicaCluster) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    connection = await asyncpg.connect(replica_cluster.primary_dsn)
    try:
        await migrate(connection)
    finally:
        await connection.close()
    primary = await create_pool(replica_cluster.primary_dsn, min_size=1, max_size=4)
    replica = await create_pool(replica_cluster.replica_dsn, min_size=0, max_size=4)
    try:
        yield primary, replica
    finally:
        await primary.close()
        await replica.close()


async def test_a_read_goes_to_the_replica_only_once_it_has_replayed_the_version_it_serves(
    replica_cluster: ReplicaCluster, pools: tuple[asyncpg.Pool, asyncpg.Pool]
) -> None:
    primary, replica = pools
    known = {"version": await _version(primary)}
    reads = ReadPools(primary, replica, primary_version=lambda: known["version"], check_s=0.1, max_lag_s=60)
    await _caught_up(reads, known["version"])
    assert await reads.run(known["version"], _in_recovery) is True

    # The standby stops replaying; the primary moves on to a version it has not seen.
    await replica_cluster.replica_sql("SELECT pg_wal_replay_pause()")
    try:
        old = known["version"]
        known["version"] = await _bump(primary)
        await reads.check()
        assert reads.replica_version == old
        # A read of the new version would contradict it: it runs on the primary.
        assert await reads.run(known["version"], _in_recovery) is False
        async with reads.acquire(known["version"]) as connection:
            assert await _in_recovery(connection) is False
        # A read of the version the replica has (a page cached under it) may still go there.
        assert await reads.run(old, _in_recovery) is True
    finally:
        await replica_cluster.replica_sql("SELECT pg_wal_replay_resume()")
    await _caught_up(reads, known["version"])
    assert await reads.run(known["version"], _in_recovery) is True


async def test_a_replica_behind_past_the_bound_gets_no_reads_until_it_catches_up(
    replica_cluster: ReplicaCluster, pools: tuple[asyncpg.Pool, asyncpg.Pool]
) -> None:
    primary, replica = pools
    known = {"version": await _version(primary)}
    reads = ReadPools(primary, replica, primary_version=lambda: known["version"], check_s=0.1, max_lag_s=0.3)
    await _caught_up(reads, known["version"])
    await replica_cluster.replica_sql("SELECT pg_wal_replay_pause()")
    try:
        known["version"] = await _bump(primary)
        await reads.check()
        # Within the bound, reads that name no version (suggestions) still use the replica.
        assert await reads.run(None, _in_recovery) is True
        await asyncio.sleep(0.4)
        await reads.check()
        assert not reads.replica_usable
        assert await reads.run(None, _in_recovery) is False
    finally:
        await replica_cluster.replica_sql("SELECT pg_wal_replay_resume()")
    await _caught_up(reads, known["version"])
    assert reads.replica_usable
    assert await reads.run(None, _in_recovery) is True


async def test_stopping_the_replica_sends_reads_to_the_primary_without_a_failed_read(
    replica_cluster: ReplicaCluster, pools: tuple[asyncpg.Pool, asyncpg.Pool]
) -> None:
    primary, replica = pools
    version = await _version(primary)
    reads = ReadPools(primary, replica, primary_version=lambda: version, check_s=0.1, max_lag_s=60)
    await _caught_up(reads, version)

    async def slow_read(connection: asyncpg.Connection) -> bool:
        await connection.execute("SELECT pg_sleep(0.3)")
        return await _in_recovery(connection)

    # Reads in flight while the standby shuts down, and reads after it is gone.
    in_flight = [asyncio.create_task(reads.run(version, slow_read)) for _ in range(3)]
    await asyncio.sleep(0.1)
    await asyncio.to_thread(replica_cluster.stop_replica)
    try:
        answers = await asyncio.gather(*in_flight)
        assert all(isinstance(a, bool) for a in answers)
        after = [await reads.run(version, _in_recovery) for _ in range(5)]
        assert after == [False] * 5
        async with reads.acquire(version) as connection:
            assert await _in_recovery(connection) is False
        await reads.check()
        assert not reads.replica_usable
    finally:
        await asyncio.to_thread(replica_cluster.start_replica)
    await _caught_up(reads, version)
    assert await reads.run(version, _in_recovery) is True


def _reads(target: str) -> float:
    return REGISTRY.get_sample_value("prethrift_db_reads_total", {"target": target}) or 0.0


async def test_the_api_searches_on_the_replica_and_never_serves_a_page_it_has_not_replayed(
    replica_cluster: ReplicaCluster, settings: Settings, tiny_clip: ClipModel, auth: dict[str, str]
) -> None:
    database = DatabaseSettings(
        url=replica_cluster.primary_dsn,
        read_url=replica_cluster.replica_dsn,
        pool_min=1,
        pool_max=4,
        replica_check_s=0.1,
    )
    app = create_app(settings.model_copy(update={"database": database}), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        client = app.test_client()
        reads = services_of(app).reads

        async def found(title: str) -> list[str]:
            response = await client.get("/api/search", query_string={"q": title, "mode": "keyword"})
            assert response.status_code == 200, await response.get_data(as_text=True)
            return [hit["title"] for hit in (await response.get_json())["items"]]

        # The uploader sees their item's status at once: item reads stay on the primary.
        response = await upload(client, photo(1), auth, title="Corduroy pinafore dress")
        assert response.status_code == 202
        item = await client.get(f"/api/items/{(await response.get_json())['id']}", headers=auth)
        assert item.status_code == 200 and (await item.get_json())["status"] == "pending"
        await run_worker_until_idle(app, None)

        version = await services_of(app).cache.catalog.current(services_of(app).pool)
        await _caught_up(reads, version)
        on_replica = _reads("replica")
        assert await found("corduroy pinafore") == ["Corduroy pinafore dress"]
        assert _reads("replica") > on_replica

        # The standby stops replaying; a new listing becomes searchable on the primary. Its
        # search must find it: the replica has not replayed the version the request read.
        await replica_cluster.replica_sql("SELECT pg_wal_replay_pause()")
        try:
            response = await upload(client, photo(2), auth, title="Mohair cardigan")
            assert response.status_code == 202
            await run_worker_until_idle(app, None)
            on_primary = _reads("primary")
            assert await found("mohair cardigan") == ["Mohair cardigan"]
            assert _reads("primary") > on_primary
        finally:
            await replica_cluster.replica_sql("SELECT pg_wal_replay_resume()")

        # The replica stops: every search still answers, from the primary.
        await asyncio.to_thread(replica_cluster.stop_replica)
        try:
            for title in ["corduroy pinafore", "mohair cardigan"] * 4:
                assert len(await found(title)) == 1
            assert not reads.replica_usable
        finally:
            await asyncio.to_thread(replica_cluster.start_replica)
