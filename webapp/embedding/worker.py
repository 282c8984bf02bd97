"""The durable embedding worker: a pipeline of claim, fetch and decode, encode, commit.

Durability (webapp/embedding/jobs.py): a claim commits each job's attempt and a lease before any work,
so a worker that dies mid-batch still spends that attempt, and its jobs are claimed again when
the lease ends. Embeddings are written only in the transaction that marks their jobs done, and
only for jobs that still hold the claim's lease: nothing is lost, nothing is embedded twice, and
a photo that keeps killing the worker ends ``failed`` instead of being retried forever.

Throughput: the stages run at once on successive batches, joined by bounded queues
(``PRETHRIFT_WORKER_PIPELINE_DEPTH`` batches each), so the next batch is claimed, fetched and
decoded while one is encoding and the one before is committing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
import numpy as np
import structlog
import torch

from webapp.adapters.storage import Storage
from webapp.catalog.version import bump_catalog_version
from webapp.config import WorkerSettings
from webapp.embedding import jobs, model_keys
from webapp.embedding.decoder import Decoder
from webapp.embedding.embedder import Embedder
from webapp.embedding.jobs import JOBS_CHANNEL, Claim, ClaimedJob
from webapp.observability.metrics_store import MetricsRecorder
from webapp.observability.telemetry import EMBEDDING_FAILURES, EMBEDDINGS, QUEUE_DEPTH

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BatchResult:
    embedded: int
    retried: int
    failed: int

    @property
    def total(self) -> int:
        return self.embedded + self.retried + self.failed


@dataclass
class _Batch:
    """A claimed batch on its way through the stages."""

    claim: Claim
    good: list[ClaimedJob] = field(default_factory=list)
    bad: list[tuple[ClaimedJob, str]] = field(default_factory=list)
    pixels: torch.Tensor | None = None
    vectors: np.ndarray | None = None


async def queue_depth(connection: asyncpg.Connection, model_key: str) -> int:
    return await jobs.queue_depth(connection, model_key)


class EmbeddingWorker:
    def __init__(
        self,
        pool: asyncpg.Pool,
        embedder: Embedder,
        storage: Storage,
        settings: WorkerSettings,
        metrics: MetricsRecorder | None = None,
        *,
        replica: str | None = None,
    ) -> None:
        self.pool = pool
        self.embedder = embedder
        self.storage = storage
        self.settings = settings
        self.metrics = metrics
        self.replica = replica or f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._decoder: Decoder | None = None

    @property
    def model_key(self) -> str:
        return self.embedder.model.model_key

    @property
    def batch_size(self) -> int:
        on_gpu = self.embedder.model.device.type == "cuda"
        return self.settings.gpu_batch_size if on_gpu else self.settings.batch_size

    @property
    def decoder(self) -> Decoder:
        clip = self.embedder.model
        if self._decoder is None or self._decoder.clip is not clip:
            self._decoder = Decoder(clip, self.settings.decode_processes, self.settings.decode_timeout_s)
        return self._decoder

    # The stages. Each takes the batch from the one before; none holds a database transaction
    # open while it waits on storage or the model.

    async def _claim(self, *, suspects: bool = True) -> _Batch | None:
        async with self.pool.acquire() as connection:
            claim, died = await jobs.claim(
                connection,
                self.model_key,
                self.batch_size,
                lease_s=self.settings.lease_s,
                max_attempts=self.settings.max_attempts,
                suspects=suspects,
            )
        if died:
            log.error("failed jobs whose worker died on them", count=died, model_key=self.model_key)
            EMBEDDING_FAILURES.labels(final="true").inc(died)
            if self.metrics is not None:
                self.metrics.ingest(embedded=0, retried=0, failed=died)
        return _Batch(claim) if claim is not None else None

    async def _prepare(self, batch: _Batch) -> _Batch:
        """Fetch the photos (concurrently) and decode them into model input."""
        jobs_ = batch.claim.jobs
        fetched = await asyncio.gather(
            *(self.storage.get(job.image_key) for job in jobs_), return_exceptions=True
        )
        readable: list[tuple[ClaimedJob, bytes]] = []
        for job, outcome in zip(jobs_, fetched, strict=True):
            if isinstance(outcome, BaseException):
                batch.bad.append((job, f"could not read image: {outcome!r}"))
            else:
                readable.append((job, outcome))
        decoded = await self.decoder.decode([data for _, data in readable])
        for (job, _), error in zip(readable, decoded.errors, strict=True):
            if error is None:
                batch.good.append(job)
            else:
                batch.bad.append((job, error))
        batch.pixels = decoded.pixels
        return batch

    async def _encode(self, batch: _Batch) -> _Batch:
        if batch.pixels is None or not batch.good:
            return batch
        try:
            batch.vectors = await self.embedder.encode_pixels(batch.pixels)
        except Exception as error:  # a model failure fails the batch, to be retried
            log.exception("embedding batch failed", size=len(batch.good))
            batch.bad.extend((job, f"model error: {error!r}") for job in batch.good)
            batch.good = []
        batch.pixels = None
        return batch

    async def _commit(self, batch: _Batch) -> BatchResult:
        retried = failed = 0
        async with self.pool.acquire() as connection, connection.transaction():
            done: list[int] = []
            if batch.good and batch.vectors is not None:
                done = await jobs.complete(connection, batch.claim, batch.good, batch.vectors)
                if done:
                    await bump_catalog_version(connection)
            for job, reason in batch.bad:
                final = await jobs.record_failure(
                    connection,
                    batch.claim,
                    job,
                    reason,
                    max_attempts=self.settings.max_attempts,
                    backoff_base_s=self.settings.backoff_base_s,
                )
                failed += final
                retried += not final
                EMBEDDING_FAILURES.labels(final=str(final).lower()).inc()
                log.warning(
                    "embedding attempt failed", item_id=job.item_id, attempts=job.attempts, reason=reason
                )
        EMBEDDINGS.inc(len(done))
        if self.metrics is not None:
            self.metrics.ingest(embedded=len(done), retried=retried, failed=failed)
        return BatchResult(len(done), retried, failed)

    async def process_batch(self) -> BatchResult:
        """Claim, embed and commit one batch, stage after stage; returns what happened to its jobs."""
        batch = await self._claim()
        if batch is None:
            return BatchResult(0, 0, 0)
        return await self._commit(await self._encode(await self._prepare(batch)))

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Run the pipeline until no job is due (or ``stop``); returns how many were embedded."""
        depth = self.settings.pipeline_depth
        claimed: asyncio.Queue[_Batch | None] = asyncio.Queue(depth)
        prepared: asyncio.Queue[_Batch | None] = asyncio.Queue(depth)
        encoded: asyncio.Queue[_Batch | None] = asyncio.Queue(depth)
        embedded = 0
        in_flight = 0
        idle = asyncio.Event()  # set while no claimed batch is in the pipeline
        idle.set()

        async def claim_stage() -> None:
            # Fresh jobs are claimed ahead while batches are in flight; a job attempted before
            # is claimed only into an empty pipeline, and nothing else until it is committed,
            # so if it kills the process no other job loses an attempt.
            nonlocal in_flight
            while stop is None or not stop.is_set():
                batch = await self._claim(suspects=in_flight == 0)
                if batch is None:
                    if in_flight == 0:
                        break
                    await idle.wait()  # then look again, suspects included
                    continue
                in_flight += 1
                idle.clear()
                await claimed.put(batch)
                if batch.claim.jobs[0].attempts > 1:
                    await idle.wait()
            await claimed.put(None)

        async def stage(
            source: asyncio.Queue[_Batch | None],
            sink: asyncio.Queue[_Batch | None],
            work: Callable[[_Batch], Awaitable[_Batch]],
        ) -> None:
            while (batch := await source.get()) is not None:
                await sink.put(await work(batch))
            await sink.put(None)

        async def commit_stage() -> None:
            nonlocal embedded, in_flight
            while (batch := await encoded.get()) is not None:
                embedded += (await self._commit(batch)).embedded
                in_flight -= 1
                if in_flight == 0:
                    idle.set()

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(claim_stage())
                group.create_task(stage(claimed, prepared, self._prepare))
                group.create_task(stage(prepared, encoded, self._encode))
                group.create_task(commit_stage())
        except ExceptionGroup as failed:  # the first stage to fail stopped the others
            raise failed.exceptions[0] from None
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
        """Work until ``stop`` is set: drain, then sleep until notified or the poll interval.

        While running, a heartbeat says this process works its model key's queue (uploads and
        ``prethrift ingest`` use it to tell whether a pending item will be processed).
        """
        listener: asyncpg.Connection | None = None
        try:
            listener = await self.pool.acquire()
            await listener.add_listener(JOBS_CHANNEL, self._notified)
        except (OSError, asyncpg.PostgresError):
            log.warning("cannot listen for new jobs; polling only")
        log.info("embedding worker started", model_key=self.model_key)
        beating = asyncio.create_task(
            model_keys.heartbeat(self.pool, self.replica, "worker", self.model_key, stop)
        )
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    await self._measure_depth()  # the backlog found on waking, then what is left
                    await self.drain(stop)
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
            if not beating.done():
                beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.remove_listener(JOBS_CHANNEL, self._notified)
                await self.pool.release(listener)
            if self._decoder is not None:
                self._decoder.close()
