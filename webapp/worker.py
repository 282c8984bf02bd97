"""The durable embedding worker: claims queued jobs, embeds their photos, commits atomically.

A batch is claimed with ``FOR UPDATE SKIP LOCKED`` inside one transaction that also writes
the embeddings and marks the jobs done. If the worker dies anywhere before the commit, the
transaction rolls back, the row locks go with the connection, and another worker claims the
same jobs: nothing is lost, and since embeddings are written only in that commit (and keyed by
item and model), nothing is embedded twice.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import asyncpg
import numpy as np
import structlog
from PIL import Image

from webapp.config import WorkerSettings
from webapp.embedder import Embedder
from webapp.images import decode_rgb
from webapp.items.repo import JOBS_CHANNEL, bump_catalog_version
from webapp.metrics_store import MetricsRecorder
from webapp.storage import Storage
from webapp.telemetry import EMBEDDING_FAILURES, EMBEDDINGS, QUEUE_DEPTH

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class ClaimedJob:
    job_id: int
    item_id: int
    attempts: int
    image_key: str


@dataclass(frozen=True)
class BatchResult:
    embedded: int
    retried: int
    failed: int

    @property
    def total(self) -> int:
        return self.embedded + self.retried + self.failed


async def claim_jobs(connection: asyncpg.Connection, model_key: str, limit: int) -> list[ClaimedJob]:
    """Lock up to ``limit`` due jobs for this model; call inside a transaction."""
    rows = await connection.fetch(
        """SELECT j.id AS job_id, j.item_id, j.attempts, i.image_key
           FROM embedding_jobs j JOIN items i ON i.id = j.item_id
           WHERE j.status = 'queued' AND j.model_key = $1 AND j.run_after <= now()
           ORDER BY j.run_after, j.id
           LIMIT $2
           FOR UPDATE OF j, i SKIP LOCKED""",
        model_key,
        limit,
    )
    return [ClaimedJob(**dict(row)) for row in rows]


async def queue_depth(connection: asyncpg.Connection, model_key: str) -> int:
    depth: int = await connection.fetchval(
        "SELECT count(*) FROM embedding_jobs WHERE status = 'queued' AND model_key = $1", model_key
    )
    return depth


class EmbeddingWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        embedder: Embedder,
        storage: Storage,
        settings: WorkerSettings,
        metrics: MetricsRecorder | None = None,
    ) -> None:
        self.pool = pool
        self.embedder = embedder
        self.storage = storage
        self.settings = settings
        self.metrics = metrics
        self._wake = asyncio.Event()

    @property
    def model_key(self) -> str:
        return self.embedder.model.model_key

    async def _load(self, job: ClaimedJob) -> Image.Image:
        data = await self.storage.get(job.image_key)
        return await asyncio.to_thread(decode_rgb, data)

    async def process_batch(self) -> BatchResult:
        """Claim, embed and commit one batch; returns what happened to its jobs."""
        async with self.pool.acquire() as connection, connection.transaction():
            jobs = await claim_jobs(connection, self.model_key, self.settings.batch_size)
            if not jobs:
                return BatchResult(0, 0, 0)
            loaded = await asyncio.gather(*(self._load(job) for job in jobs), return_exceptions=True)
            good: list[tuple[ClaimedJob, Image.Image]] = []
            bad: list[tuple[ClaimedJob, str]] = []
            for job, outcome in zip(jobs, loaded, strict=True):
                if isinstance(outcome, BaseException):
                    bad.append((job, f"could not read image: {outcome!r}"))
                else:
                    good.append((job, outcome))
            if good:
                try:
                    vectors = await self.embedder.embed_images_direct([image for _, image in good])
                except Exception as error:  # a model failure fails the batch, to be retried
                    log.exception("embedding batch failed", size=len(good))
                    bad.extend((job, f"model error: {error!r}") for job, _ in good)
                    good, vectors = [], np.empty((0, 0), dtype=np.float32)
                if good:
                    await self._commit_embeddings(connection, [job for job, _ in good], vectors)
            retried, failed = await self._record_failures(connection, bad)
        EMBEDDINGS.inc(len(good))
        if self.metrics is not None:
            self.metrics.ingest(embedded=len(good), retried=retried, failed=failed)
        return BatchResult(len(good), retried, failed)

    async def _commit_embeddings(
        self, connection: asyncpg.Connection, jobs: list[ClaimedJob], vectors: np.ndarray
    ) -> None:
        await connection.executemany(
            """INSERT INTO item_embeddings (item_id, model_key, embedding) VALUES ($1, $2, $3)
               ON CONFLICT (item_id, model_key) DO UPDATE SET embedding = EXCLUDED.embedding,
                                                             created_at = now()""",
            [(job.item_id, self.model_key, vector) for job, vector in zip(jobs, vectors, strict=True)],
        )
        job_ids = [job.job_id for job in jobs]
        item_ids = [job.item_id for job in jobs]
        await connection.execute(
            """UPDATE embedding_jobs SET status = 'done', attempts = attempts + 1,
                      last_error = NULL, updated_at = now()
               WHERE id = ANY($1::bigint[])""",
            job_ids,
        )
        await connection.execute(
            """UPDATE items SET status = 'ready', failure_reason = NULL, updated_at = now()
               WHERE id = ANY($1::bigint[]) AND status IN ('pending', 'failed')""",
            item_ids,
        )
        await bump_catalog_version(connection)

    async def _record_failures(
        self, connection: asyncpg.Connection, bad: list[tuple[ClaimedJob, str]]
    ) -> tuple[int, int]:
        retried = failed = 0
        for job, reason in bad:
            attempts = job.attempts + 1
            if attempts >= self.settings.max_attempts:
                failed += 1
                EMBEDDING_FAILURES.labels(final="true").inc()
                await connection.execute(
                    """UPDATE embedding_jobs SET status = 'failed', attempts = $2, last_error = $3,
                              updated_at = now() WHERE id = $1""",
                    job.job_id,
                    attempts,
                    reason,
                )
                await connection.execute(
                    """UPDATE items SET status = 'failed', failure_reason = $2, updated_at = now()
                       WHERE id = $1 AND status = 'pending'""",
                    job.item_id,
                    f"embedding failed after {attempts} attempts: {reason}",
                )
            else:
                retried += 1
                EMBEDDING_FAILURES.labels(final="false").inc()
                delay = self.settings.backoff_base_s * 2 ** (attempts - 1)
                await connection.execute(
                    """UPDATE embedding_jobs SET attempts = $2, last_error = $3, updated_at = now(),
                              run_after = now() + make_interval(secs => $4) WHERE id = $1""",
                    job.job_id,
                    attempts,
                    reason,
                    delay,
                )
            log.warning("embedding attempt failed", item_id=job.item_id, attempts=attempts, reason=reason)
        return retried, failed

    async def drain(self) -> int:
        """Process batches until no job is due; returns how many items were embedded."""
        embedded = 0
        while True:
            result = await self.process_batch()
            embedded += result.embedded
            if result.total == 0:
                return embedded

    async def _measure_depth(self) -> None:
        async with self.pool.acquire() as connection:
            depth = await queue_depth(connection, self.model_key)
        QUEUE_DEPTH.set(depth)
        if self.metrics is not None:
            self.metrics.queue_depth(depth)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set: drain, then sleep until notified or the poll interval."""
        listener: asyncpg.Connection | None = None
        try:
            listener = await self.pool.acquire()
            await listener.add_listener(JOBS_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError):
            log.warning("cannot listen for new jobs; polling only")
        log.info("embedding worker started", model_key=self.model_key)
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._measure_depth()  # the backlog found on waking, then what is left
                    await self.drain()
                    await self._measure_depth()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    log.exception("worker cycle failed; retrying")
                with contextlib.suppress(TimeoutError):
                    waiter = asyncio.create_task(self._wake.wait())
                    stopper = asyncio.create_task(stop.wait())
                    try:
                        await asyncio.wait(
                            {waiter, stopper},
                            timeout=self.settings.poll_interval_s,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    finally:
                        waiter.cancel()
                        stopper.cancel()
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(JOBS_CHANNEL, self._notified)
                await self.pool.release(listener)
