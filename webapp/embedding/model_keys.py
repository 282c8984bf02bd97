"""Model keys and their lifecycle: registered, backfilling, serving, retired.

Embeddings are stored per model key (``item_embeddings.model_key``), so a new model is embedded
beside the old one while the old one keeps serving. The registry (``embedding_models``) names
the keys every upload is queued for; heartbeats (``model_heartbeats``) say which key each API
and worker process serves right now. Imports no torch: the CLI's ``models``, ``reembed`` and
``retire`` stay quick.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import structlog

from webapp.adapters.db import drop_vector_indexes, vector_index_name
from webapp.catalog.version import bump_catalog_version
from webapp.config import ClipSettings
from webapp.embedding import jobs

log = structlog.get_logger(__name__)

Role = Literal["api", "worker"]
State = Literal["serving", "backfilling", "retired"]

# A process refreshes its heartbeat this often; one not refreshed for FRESH_S is gone.
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_FRESH_S = 30.0


def model_key_for(settings: ClipSettings) -> str:
    """Embeddings are stored per model key, so a model change can re-embed beside the old one."""
    pretrained = settings.pretrained
    if pretrained.lower() == "none":
        tag = "random-seed0"
    elif Path(pretrained).is_file():
        tag = "file-" + Path(pretrained).name
    else:
        tag = pretrained
    return f"{settings.model}/{tag}"


async def register(connection: asyncpg.Connection, model_key: str) -> bool:
    """Register (or un-retire) a key; True when it was not active before."""
    status: str = await connection.execute(
        """INSERT INTO embedding_models (model_key) VALUES ($1)
           ON CONFLICT (model_key) DO UPDATE SET retired_at = NULL, registered_at = now()
           WHERE embedding_models.retired_at IS NOT NULL""",
        model_key,
    )
    return status.endswith(" 1")


async def is_retired(connection: asyncpg.Connection, model_key: str) -> bool:
    retired: bool | None = await connection.fetchval(
        "SELECT retired_at IS NOT NULL FROM embedding_models WHERE model_key = $1", model_key
    )
    return bool(retired)


async def register_serving(connection: asyncpg.Connection, model_key: str) -> bool:
    """Register the key a starting API serves, unless an operator retired it: False then.

    Only ``reembed`` (an operator's choice) brings a retired key back. A task of an old release
    that restarts after its key was retired must not: uploads would be queued for it again and
    ``prethrift models`` would show it alive, with its embeddings already deleted.
    """
    retired = await connection.fetchval(
        """WITH added AS (
               INSERT INTO embedding_models (model_key) VALUES ($1)
               ON CONFLICT (model_key) DO NOTHING RETURNING model_key)
           SELECT retired_at IS NOT NULL FROM embedding_models
           WHERE model_key = $1 AND NOT EXISTS (SELECT 1 FROM added)""",
        model_key,
    )
    return not retired


async def reembed(connection: asyncpg.Connection, model_key: str) -> int:
    """Register ``model_key`` and queue every live item it lacks; idempotent. Returns jobs queued."""
    await register(connection, model_key)
    return await jobs.queue_backfill(connection, model_key)


@dataclass(frozen=True)
class Coverage:
    embedded: int
    total: int

    @property
    def fraction(self) -> float:
        return 1.0 if self.total == 0 else self.embedded / self.total

    def describe(self) -> str:
        return f"{self.fraction:.1%} ({self.embedded:,} of {self.total:,} items)"


# Live items that can be embedded under a key: not deleted, not failed, and not failed for
# this key alone (a photo the model cannot read never counts against its coverage).
_COVERAGE = """
    SELECT count(*) FILTER (WHERE EXISTS (SELECT 1 FROM item_embeddings e
                                          WHERE e.item_id = i.id AND e.model_key = $1)) AS embedded,
           count(*) AS total
    FROM items i
    WHERE i.status IN ('pending', 'ready')
      AND NOT EXISTS (SELECT 1 FROM embedding_jobs j
                      WHERE j.item_id = i.id AND j.model_key = $1 AND j.status = 'failed')
"""


async def coverage(connection: asyncpg.Connection, model_key: str) -> Coverage:
    row = await connection.fetchrow(_COVERAGE, model_key)
    assert row is not None
    return Coverage(row["embedded"], row["total"])


@dataclass(frozen=True)
class ModelInfo:
    model_key: str
    embedded: int
    total: int
    coverage: float
    state: State
    serving_replicas: int
    workers: int
    embedded_last_5m: int

    def as_json(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in asdict(self).items()
            if k in ("model_key", "embedded", "total", "coverage", "state")
        }


async def list_models(connection: asyncpg.Connection) -> list[ModelInfo]:
    """Every registered key with its coverage, state and recent backfill rate."""
    rows = await connection.fetch(
        """SELECT m.model_key, m.retired_at IS NOT NULL AS retired,
                  (SELECT count(*) FROM model_heartbeats h WHERE h.model_key = m.model_key
                     AND h.role = 'api' AND h.seen_at > now() - make_interval(secs => $1)) AS apis,
                  (SELECT count(*) FROM model_heartbeats h WHERE h.model_key = m.model_key
                     AND h.role = 'worker' AND h.seen_at > now() - make_interval(secs => $1)) AS workers,
                  (SELECT count(*) FROM item_embeddings e WHERE e.model_key = m.model_key
                     AND e.created_at > now() - interval '5 minutes') AS recent
           FROM embedding_models m ORDER BY m.registered_at, m.model_key""",
        HEARTBEAT_FRESH_S,
    )
    found = []
    for row in rows:
        covered = await coverage(connection, row["model_key"])
        state: State = "retired" if row["retired"] else "serving" if row["apis"] else "backfilling"
        found.append(
            ModelInfo(
                row["model_key"],
                covered.embedded,
                covered.total,
                round(covered.fraction, 6),
                state,
                row["apis"],
                row["workers"],
                row["recent"],
            )
        )
    return found


async def serving(connection: asyncpg.Connection, model_key: str, role: Role = "api") -> list[str]:
    """Replicas whose fresh heartbeat says they serve ``model_key``."""
    rows = await connection.fetch(
        """SELECT replica FROM model_heartbeats
           WHERE model_key = $1 AND role = $2 AND seen_at > now() - make_interval(secs => $3)
           ORDER BY replica""",
        model_key,
        role,
        HEARTBEAT_FRESH_S,
    )
    return [r["replica"] for r in rows]


class KeyInUse(RuntimeError):
    """Retiring a key that an API still serves."""


@dataclass(frozen=True)
class Retired:
    model_key: str
    embeddings: int
    jobs: int
    index: str


async def retire(connection: asyncpg.Connection, model_key: str, *, force: bool = False) -> Retired:
    """Delete a key's embeddings, its HNSW index and its jobs, and stop queueing uploads for it."""
    known = await connection.fetchval("SELECT 1 FROM embedding_models WHERE model_key = $1", model_key)
    if not known:
        raise LookupError(f"no model key {model_key!r} is registered")
    apis = await serving(connection, model_key)
    if apis and not force:
        raise KeyInUse(
            f"{model_key!r} is being served by {', '.join(apis)}; move the API to another key first "
            "(or pass --force)"
        )
    index = vector_index_name(model_key)
    async with connection.transaction():
        await connection.execute(
            "UPDATE embedding_models SET retired_at = now() WHERE model_key = $1", model_key
        )
        removed_jobs = await jobs.delete_for_key(connection, model_key)
        status = await connection.execute("DELETE FROM item_embeddings WHERE model_key = $1", model_key)
        await drop_vector_indexes(connection, model_key)
        await bump_catalog_version(connection)
    return Retired(model_key, int(status.split()[-1]), removed_jobs, index)


async def beat(connection: asyncpg.Connection, replica: str, role: Role, model_key: str) -> None:
    await connection.execute(
        """INSERT INTO model_heartbeats (replica, role, model_key) VALUES ($1, $2, $3)
           ON CONFLICT (replica, role) DO UPDATE SET model_key = EXCLUDED.model_key, seen_at = now()""",
        replica,
        role,
        model_key,
    )


async def heartbeat(pool: asyncpg.Pool, replica: str, role: Role, model_key: str, stop: asyncio.Event) -> None:
    """Say which key this process serves until ``stop``; then say it no longer does."""
    try:
        while not stop.is_set():
            try:
                async with pool.acquire() as connection:
                    await beat(connection, replica, role, model_key)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                log.warning("heartbeat failed", role=role, model_key=model_key)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), HEARTBEAT_INTERVAL_S)
    finally:
        with contextlib.suppress(Exception):
            async with pool.acquire() as connection:
                await connection.execute(
                    "DELETE FROM model_heartbeats WHERE replica = $1 AND role = $2", replica, role
                )


async def pending_reason(connection: asyncpg.Connection, item_id: int) -> str | None:
    """Why a pending item is still pending, when no worker is running for a key it waits on."""
    waiting = await jobs.queued_keys(connection, item_id)
    idle = [key for key in waiting if not await serving(connection, key, "worker")]
    if not idle:
        return None
    return (
        f"waiting for an embedding worker for model {', '.join(idle)}; none is running "
        "(start `prethrift worker` with that model)"
    )


# How long the oldest live listing the key has not embedded yet (nor failed on) has waited since
# it was listed; NULL when the key covers them all. Walks items oldest first and stops at the first.
_OLDEST_UNEMBEDDED_AGE = """
    SELECT extract(epoch FROM now() - i.created_at)::float8
    FROM items i
    WHERE i.status IN ('pending', 'ready')
      AND NOT EXISTS (SELECT 1 FROM item_embeddings e WHERE e.item_id = i.id AND e.model_key = $1)
      AND NOT EXISTS (SELECT 1 FROM embedding_jobs j
                      WHERE j.item_id = i.id AND j.model_key = $1 AND j.status = 'failed')
    ORDER BY i.created_at
    LIMIT 1
"""


async def backlog_age(connection: asyncpg.Connection, model_key: str) -> float | None:
    """Seconds the oldest listing still waiting for its embedding under ``model_key`` has been
    listed, or None when there is none."""
    age: float | None = await connection.fetchval(_OLDEST_UNEMBEDDED_AGE, model_key)
    return age


class CoverageGate:
    """Readiness for an API that must not serve a half-built index: not ready while a listing older
    than ``max_backlog_age_s`` lacks its embedding under the served key (a model whose catalog is
    still being embedded), then ready for good. Uploads younger than that don't hold it back, so a
    worker that lags a few minutes never keeps new API tasks out of the load balancer."""

    def __init__(self, model_key: str, max_backlog_age_s: float = 0.0) -> None:
        self.model_key = model_key
        self.max_backlog_age_s = max_backlog_age_s
        self.complete = False

    async def problem(self, connection: asyncpg.Connection) -> str | None:
        if self.complete:
            return None
        age = await backlog_age(connection, self.model_key)
        if age is None or age < self.max_backlog_age_s:
            self.complete = True
            return None
        covered = await coverage(connection, self.model_key)
        return (
            f"model {self.model_key} covers {covered.describe()}; a listing has waited {age:,.0f} s for "
            f"its embedding (PRETHRIFT_READY_MAX_BACKLOG_AGE_S={self.max_backlog_age_s:g}); "
            "a worker is backfilling it"
        )
