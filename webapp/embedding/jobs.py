"""The embedding queue: every statement that reads or writes ``embedding_jobs``.

A job is one photo of an item to embed under one model key. Its life:

1. queued, by an upload (one job per photo and registered key) or by ``prethrift reembed`` (a
   backfill);
2. claimed: the claim commits ``attempts + 1`` and a lease (``run_after`` moves to the lease's
   end) *before* any work, so a worker that dies mid-batch still spends an attempt;
3. done, in the same transaction that writes its embedding, and only while the claim's lease
   is still held; or retried after a backoff; or failed after the last attempt.

A job that comes back after a lease ran out (its worker died) is claimed alone, so a photo that
kills the process takes nobody else down with it, and once its attempts are spent the claim
marks it failed with a reason saying so.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import numpy as np

# pg_notify channel the embedding worker listens on.
JOBS_CHANNEL = "embedding_jobs"


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    item_id: int
    photo: int
    attempts: int  # including this one
    image_key: str


@dataclass(frozen=True)
class Claim:
    lease: uuid.UUID
    model_key: str
    jobs: list[ClaimedJob]


async def notify(connection: asyncpg.Connection, model_key: str) -> None:
    await connection.execute("SELECT pg_notify($1, $2)", JOBS_CHANNEL, model_key)


async def queue_photos(
    connection: asyncpg.Connection, item_id: int, photos: list[int], fallback_key: str
) -> list[str]:
    """Queue photos of an item for every registered, unretired key (call inside the transaction
    that records them): fresh jobs, fresh attempts. Returns the keys queued.

    ``fallback_key`` is registered first when no key is (a fresh catalog).
    """
    if not photos:
        return []
    await connection.execute(
        """INSERT INTO embedding_models (model_key)
           SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM embedding_models WHERE retired_at IS NULL)
           ON CONFLICT (model_key) DO UPDATE SET retired_at = NULL""",
        fallback_key,
    )
    rows = await connection.fetch(
        """INSERT INTO embedding_jobs (item_id, photo, model_key)
           SELECT $1, p, model_key FROM embedding_models, unnest($2::integer[]) AS p
           WHERE retired_at IS NULL
           ON CONFLICT (item_id, photo, model_key) DO UPDATE
           SET status = 'queued', attempts = 0, run_after = now(), last_error = NULL, lease = NULL,
               updated_at = now()
           RETURNING model_key""",
        item_id,
        photos,
    )
    keys = sorted({r["model_key"] for r in rows})
    for key in keys:
        await notify(connection, key)
    return keys


async def queue_backfill(connection: asyncpg.Connection, model_key: str) -> int:
    """Queue ``model_key`` for every photo of a live item it has not embedded; idempotent. Returns
    how many photos."""
    async with connection.transaction():
        status = await connection.execute(
            """INSERT INTO embedding_jobs (item_id, photo, model_key)
               SELECT p.item_id, p.photo, $1 FROM items i JOIN item_photos p ON p.item_id = i.id
               WHERE i.status IN ('pending', 'ready')
                 AND NOT EXISTS (SELECT 1 FROM item_embeddings e
                                 WHERE e.item_id = p.item_id AND e.photo = p.photo AND e.model_key = $1)
               ON CONFLICT (item_id, photo, model_key) DO NOTHING""",
            model_key,
        )
        queued = int(status.split()[-1])
        if queued:
            await notify(connection, model_key)
    return queued


async def delete_for_item(connection: asyncpg.Connection, item_id: int) -> None:
    """Drop an item's jobs. A worker committing one of them finishes first (row lock), and one
    that commits later finds its lease gone and writes nothing."""
    await connection.execute("DELETE FROM embedding_jobs WHERE item_id = $1", item_id)


async def delete_for_photos(connection: asyncpg.Connection, item_id: int, photos: list[int]) -> None:
    """Drop the jobs of photos being removed (as ``delete_for_item`` does for a whole item)."""
    await connection.execute(
        "DELETE FROM embedding_jobs WHERE item_id = $1 AND photo = ANY($2::integer[])", item_id, photos
    )


async def delete_for_key(connection: asyncpg.Connection, model_key: str) -> int:
    status = await connection.execute("DELETE FROM embedding_jobs WHERE model_key = $1", model_key)
    return int(status.split()[-1])


async def _fail_exhausted(connection: asyncpg.Connection, model_key: str, max_attempts: int) -> int:
    """Jobs back from an expired lease with every attempt spent: their worker died on them."""
    rows = await connection.fetch(
        """UPDATE embedding_jobs SET status = 'failed', lease = NULL, updated_at = now(),
                  last_error = format('the worker died while embedding this photo (%s attempts)', attempts)
           WHERE id IN (SELECT id FROM embedding_jobs
                        WHERE status = 'queued' AND model_key = $1 AND run_after <= now()
                          AND attempts >= $2
                        FOR UPDATE SKIP LOCKED)
           RETURNING item_id, photo, last_error""",
        model_key,
        max_attempts,
    )
    for row in rows:
        await _photo_failed(connection, row["item_id"], row["photo"], "embedding failed: " + row["last_error"])
    return len(rows)


async def _photo_failed(connection: asyncpg.Connection, item_id: int, photo: int, reason: str) -> None:
    """A photo that could not be embedded; its item fails with it only while that photo is the
    cover of an item not yet searchable (other photos never hold an item back)."""
    await connection.execute(
        """WITH p AS (
               UPDATE item_photos SET status = 'failed', failure_reason = $3
               WHERE item_id = $1 AND photo = $2 AND status <> 'ready'
               RETURNING position
           )
           UPDATE items SET status = 'failed', failure_reason = $3, updated_at = now()
           WHERE id = $1 AND status = 'pending' AND EXISTS (SELECT 1 FROM p WHERE position = 1)""",
        item_id,
        photo,
        reason,
    )


async def _lease(
    connection: asyncpg.Connection,
    model_key: str,
    *,
    retried: bool,
    limit: int,
    lease: uuid.UUID,
    lease_s: float,
) -> list[asyncpg.Record]:
    """Lease up to ``limit`` queued jobs, counting the attempt before any work: jobs tried before
    (``retried``) or fresh ones, oldest first."""
    tried = "attempts > 0" if retried else "attempts = 0"
    rows: list[asyncpg.Record] = await connection.fetch(
        f"""WITH picked AS (
               SELECT id FROM embedding_jobs
               WHERE status = 'queued' AND model_key = $1 AND run_after <= now() AND {tried}
               ORDER BY run_after, id LIMIT $2 FOR UPDATE SKIP LOCKED
           )
           UPDATE embedding_jobs j
           SET attempts = j.attempts + 1, lease = $3, updated_at = now(),
               run_after = now() + make_interval(secs => $4)
           FROM picked, item_photos p
           WHERE j.id = picked.id AND p.item_id = j.item_id AND p.photo = j.photo
           RETURNING j.id AS job_id, j.item_id, j.photo, j.attempts, p.image_key""",
        model_key,
        limit,
        lease,
        lease_s,
    )
    return rows


async def claim(
    connection: asyncpg.Connection,
    model_key: str,
    limit: int,
    *,
    lease_s: float,
    max_attempts: int,
    suspects: bool = True,
) -> tuple[Claim | None, int]:
    """Lease up to ``limit`` due jobs and commit the attempt; returns the claim (None when
    nothing is due) and how many jobs were failed for having killed their worker.

    A job attempted before (a suspect: it may have killed its last worker) is claimed alone,
    and only when ``suspects`` is true: the caller passes that when it holds no other lease, so
    a photo that kills the worker again takes no batch-mates' attempts with it.
    """
    lease = uuid.uuid4()
    rows: list[asyncpg.Record] = []
    async with connection.transaction():
        died = await _fail_exhausted(connection, model_key, max_attempts)
        if suspects:
            rows = await _lease(connection, model_key, retried=True, limit=1, lease=lease, lease_s=lease_s)
        if not rows:
            rows = await _lease(connection, model_key, retried=False, limit=limit, lease=lease, lease_s=lease_s)
    if not rows:
        return None, died
    jobs = sorted((ClaimedJob(**dict(r)) for r in rows), key=lambda job: job.job_id)
    return Claim(lease, model_key, jobs), died


async def complete(
    connection: asyncpg.Connection, claim: Claim, jobs: list[ClaimedJob], vectors: np.ndarray
) -> list[int]:
    """Write the embeddings of ``jobs`` and mark them done, in one multi-row statement, for the
    jobs that still hold the claim's lease; returns their item ids. Call inside a transaction.

    An item becomes searchable once its cover is embedded; its other photos join as they finish.
    """
    if not jobs:
        return []
    flat = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(flat.shape[1])
    rows = await connection.fetch(
        """WITH done AS (
               UPDATE embedding_jobs SET status = 'done', lease = NULL, last_error = NULL,
                      updated_at = now()
               WHERE lease = $1 AND status = 'queued' AND id = ANY($3::bigint[])
               RETURNING item_id, photo
           )
           INSERT INTO item_embeddings (item_id, photo, model_key, embedding)
           SELECT v.item_id, v.photo, $2, (($4::real[])[(v.o - 1) * $5 + 1 : v.o * $5])::halfvec
           FROM unnest($6::bigint[], $7::integer[]) WITH ORDINALITY AS v(item_id, photo, o)
           JOIN done d ON d.item_id = v.item_id AND d.photo = v.photo
           ON CONFLICT (item_id, photo, model_key)
           DO UPDATE SET embedding = EXCLUDED.embedding, created_at = now()
           RETURNING item_id, photo""",
        claim.lease,
        claim.model_key,
        [job.job_id for job in jobs],
        flat.reshape(-1).tolist(),
        dim,
        [job.item_id for job in jobs],
        [job.photo for job in jobs],
    )
    item_ids = [r["item_id"] for r in rows]
    await connection.execute(
        """WITH p AS (
               UPDATE item_photos p SET status = 'ready', failure_reason = NULL
               FROM unnest($1::bigint[], $2::integer[]) AS d(item_id, photo)
               WHERE p.item_id = d.item_id AND p.photo = d.photo
               RETURNING p.item_id, p.position
           )
           UPDATE items SET status = 'ready', failure_reason = NULL, updated_at = now()
           WHERE id IN (SELECT item_id FROM p WHERE position = 1) AND status IN ('pending', 'failed')""",
        item_ids,
        [r["photo"] for r in rows],
    )
    return item_ids


async def record_failure(
    connection: asyncpg.Connection,
    claim: Claim,
    job: ClaimedJob,
    reason: str,
    *,
    max_attempts: int,
    backoff_base_s: float,
) -> bool:
    """Record a failed attempt (already counted by the claim); True when it was the last."""
    if job.attempts >= max_attempts:
        await connection.execute(
            """UPDATE embedding_jobs SET status = 'failed', lease = NULL, last_error = $3,
                      updated_at = now()
               WHERE id = $1 AND lease = $2""",
            job.job_id,
            claim.lease,
            reason,
        )
        await _photo_failed(
            connection, job.item_id, job.photo, f"embedding failed after {job.attempts} attempts: {reason}"
        )
        return True
    await connection.execute(
        """UPDATE embedding_jobs SET lease = NULL, last_error = $3, updated_at = now(),
                  run_after = now() + make_interval(secs => $4)
           WHERE id = $1 AND lease = $2""",
        job.job_id,
        claim.lease,
        reason,
        backoff_base_s * 2 ** (job.attempts - 1),
    )
    return False


async def queue_depth(connection: asyncpg.Connection, model_key: str | None = None) -> int:
    """Jobs waiting (or leased) for one key, or for every key."""
    depth: int = await connection.fetchval(
        "SELECT count(*) FROM embedding_jobs WHERE status = 'queued' AND ($1::text IS NULL OR model_key = $1)",
        model_key,
    )
    return depth


@dataclass(frozen=True)
class Failure:
    item_id: int
    title: str
    status: str  # 'failed' for good, 'queued' while it will be retried
    attempts: int
    reason: str
    at: datetime


async def recent_failures(connection: asyncpg.Connection, limit: int = 20) -> list[Failure]:
    """Embedding jobs whose last attempt failed, newest first, with the reason recorded."""
    rows = await connection.fetch(
        """SELECT j.item_id, i.title, j.status, j.attempts, j.last_error, j.updated_at
           FROM embedding_jobs j JOIN items i ON i.id = j.item_id
           WHERE j.last_error IS NOT NULL AND j.status <> 'done'
           ORDER BY j.updated_at DESC LIMIT $1""",
        limit,
    )
    return [Failure(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]


async def queued_keys(connection: asyncpg.Connection, item_id: int) -> list[str]:
    """The keys an item still waits on."""
    rows = await connection.fetch(
        "SELECT model_key FROM embedding_jobs WHERE item_id = $1 AND status = 'queued' ORDER BY model_key",
        item_id,
    )
    return [r["model_key"] for r in rows]
