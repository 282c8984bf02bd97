"""Building what a process needs, once: pool, cache, storage, model holder, query log.

``open_services`` returns the complete set; ``prepare_model`` makes the model ready for
search and embedding; ``run_worker`` is the one way the embedding worker starts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import asyncpg
import structlog

from webapp.adapters.cache import Cache, LocalBackend, RedisBackend
from webapp.adapters.db import create_pool, run_migrations
from webapp.adapters.replica import ReadPools, shuffled_hosts
from webapp.adapters.storage import LocalStorage, S3Storage, Storage
from webapp.analytics.log import SearchLog
from webapp.analytics.retention import run_upkeep
from webapp.config import DatabaseSettings, Settings
from webapp.embedding.embedder import ClipModel, Embedder
from webapp.embedding.model_keys import model_key_for
from webapp.embedding.worker import EmbeddingWorker
from webapp.imports.drain import run_import_loop
from webapp.observability.metrics_store import MetricsRecorder
from webapp.search.graphs import ensure_vector_index
from webapp.search.repo import VectorQueries
from webapp.services import Readiness, Services
from webapp.suggest.repo import QueryLog, Suggester

log = structlog.get_logger(__name__)


def make_cache(settings: Settings) -> Cache:
    r = settings.redis
    if r.url is not None:
        backend: RedisBackend | LocalBackend = RedisBackend(
            r.url.get_secret_value(), r.timeout_s, r.retry_after_s
        )
    else:
        # The worker and the loaders never read the cache; the API requires REDIS_URL outside
        # development, so this is the development single-process case.
        log.info("no REDIS_URL: using a bounded in-process cache (one process only)")
        backend = LocalBackend(r.local_max_entries)
    return Cache(backend, embedding_ttl_s=r.embedding_ttl_s, result_ttl_s=r.result_ttl_s)


async def make_storage(settings: Settings) -> Storage:
    s = settings.storage
    if s.bucket:
        storage = S3Storage(
            s.bucket,
            region=s.region,
            endpoint_url=s.endpoint_url,
            presign_ttl_s=s.presign_ttl_s,
            cdn_url=s.cdn_url,
        )
        await storage.open()
        return storage
    return LocalStorage(settings.data_dir / "images")


async def open_read_pools(db: DatabaseSettings, primary: asyncpg.Pool, cache: Cache) -> ReadPools:
    """The primary alone, or with the read replica in ``DATABASE_READ_URL``.

    The replica's pool opens no connection up front (a replica that is down at start-up only
    means reads go to the primary), and each process shuffles the replica hosts once, so that
    tasks spread their reads over several replicas.
    """
    if db.read_url is None:
        return ReadPools(primary)
    replica = await create_pool(
        shuffled_hosts(db.read_url.get_secret_value()),
        min_size=0,
        max_size=db.pool_max,
        ef_search=db.ef_search,
    )
    reads = ReadPools(
        primary,
        replica,
        primary_version=lambda: cache.catalog.value,
        check_s=db.replica_check_s,
        max_lag_s=db.replica_max_lag_s,
    )
    await reads.start()
    return reads


@contextlib.asynccontextmanager
async def open_services(
    settings: Settings, clip: ClipModel | None = None, readiness: Readiness | None = None
) -> AsyncIterator[Services]:
    """Migrate, then open everything a feature may use and close it on exit.

    ``clip`` is an already loaded model to share; without it the model loads in prepare_model.
    ``readiness`` is the app's, when its error handlers report to it before services open.
    """
    if settings.database.url is None:
        raise ValueError("DATABASE_URL is not set (the CLI starts the embedded database)")
    dsn = settings.database.url.get_secret_value()
    await run_migrations(dsn)
    async with contextlib.AsyncExitStack() as stack:
        db = settings.database
        pool = await create_pool(dsn, min_size=db.pool_min, max_size=db.pool_max, ef_search=db.ef_search)
        stack.push_async_callback(pool.close)
        cache = make_cache(settings)
        stack.push_async_callback(cache.close)
        await cache.catalog.start(dsn)
        reads = await open_read_pools(db, pool, cache)
        stack.push_async_callback(reads.close)
        storage = await make_storage(settings)
        stack.push_async_callback(storage.close)
        embedder = Embedder(settings.clip)
        stack.push_async_callback(embedder.close)
        if clip is not None:
            embedder.attach(clip)
        yield Services(
            settings=settings,
            pool=pool,
            reads=reads,
            cache=cache,
            storage=storage,
            embedder=embedder,
            model_key=clip.model_key if clip is not None else model_key_for(settings.clip),
            query_log=QueryLog(pool, settings.suggest),
            suggester=Suggester(pool, settings.suggest, reads=reads, catalog=cache.catalog),
            search_log=SearchLog(pool, settings.analytics),
            readiness=readiness or Readiness(),
        )


async def prepare_model(services: Services) -> ClipModel:
    """Load the model unless one is attached, build its vector index, and mark search ready."""
    embedder = services.embedder
    clip = embedder.clip if embedder.clip is not None else await embedder.load()
    db = services.settings.database
    async with services.pool.acquire() as connection:
        await ensure_vector_index(
            connection, clip.model_key, clip.dim, m=db.hnsw_m, ef_construction=db.hnsw_ef_construction
        )
    services.readiness.queries = VectorQueries(clip.model_key, clip.dim, db)
    log.info("ready", model_key=clip.model_key)
    return clip


async def run_worker(services: Services, stop: asyncio.Event, recorder: MetricsRecorder | None = None) -> None:
    """Embed queued uploads until ``stop`` is set, loading the model first if need be."""
    if not services.readiness.model_ready:
        await prepare_model(services)
    worker = EmbeddingWorker(
        services.pool, services.embedder, services.storage, services.settings.worker, recorder
    )
    # Imports that webhooks queued are applied here too: their photos are fetched off the
    # request path, by the process that then embeds them. The search log's rollups and expiry
    # ride along as well: every deployment runs a worker.
    imports = asyncio.create_task(run_import_loop(services, stop, services.settings.worker.poll_interval_s))
    upkeep = asyncio.create_task(run_upkeep(services.pool, services.settings.analytics, stop))
    try:
        await worker.run(stop)
    finally:
        # A job cut short stays queued under its lease and is applied again later.
        for task in (imports, upkeep):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
