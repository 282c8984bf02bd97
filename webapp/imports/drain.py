"""The import queue webhooks fill, worked off the request path: the embedding worker runs
``run_import_loop`` beside its embedding loop, so photos are fetched by a process that has the
time, and a delivery is never lost to a restart (a job stays queued until it is applied, and a
worker that dies holding one leaves it to be claimed again when its lease ends)."""

from __future__ import annotations

import asyncio
import contextlib

import structlog

from webapp.http.errors import ApiError
from webapp.imports import repo
from webapp.imports.apply import PhotoCache, fetch_photos, fingerprint, remove, store
from webapp.imports.fetch import FetchError, PhotoFetcher
from webapp.services import Services

log = structlog.get_logger(__name__)

LEASE_S = 300.0
MAX_ATTEMPTS = 8
# A job that failed MAX_ATTEMPTS times waits this long before another try (a shop fixing a
# photo sends an update, which resets the count at once).
PARKED_S = 24 * 3600.0


def photo_cache(services: Services) -> PhotoCache:
    return PhotoCache(services.settings.data_dir / "import-cache")


async def apply_job(services: Services, fetcher: PhotoFetcher, job: repo.ImportJob) -> str:
    """Apply one queued import; the outcome word for the log."""
    if job.action == "delete":
        return "deleted" if await remove(services, job.external_id) else "absent"
    fields: dict[str, str] = job.payload["fields"]
    sources: list[str] = job.payload["photos"]
    photos, _ = await fetch_photos(services, fetcher, photo_cache(services), sources)
    outcome = (await store(services, job.external_id, fields, photos)).outcome
    async with services.pool.acquire() as connection:
        await repo.record_listing(
            connection, job.external_id, "shopify", fingerprint(fields, sources), job.payload.get("product_id")
        )
    return outcome


async def drain_once(services: Services, fetcher: PhotoFetcher, batch: int = 8) -> int:
    """Claim and apply the imports due now; how many were claimed."""
    async with services.pool.acquire() as connection:
        jobs = await repo.claim_imports(connection, batch, LEASE_S)

    async def one(job: repo.ImportJob) -> None:
        try:
            outcome = await apply_job(services, fetcher, job)
        except Exception as error:  # noqa: BLE001 (one listing's failure never stops the queue)
            message = (
                error.message
                if isinstance(error, FetchError | ApiError)
                else f"{type(error).__name__}: {error}"
            )
            wait = PARKED_S if job.attempts >= MAX_ATTEMPTS else min(PARKED_S, 10.0 * 2**job.attempts)
            log.warning("import failed", external_id=job.external_id, attempt=job.attempts, reason=message)
            async with services.pool.acquire() as connection:
                await repo.retry_import(connection, job, message, wait)
            return
        log.info("import applied", external_id=job.external_id, action=job.action, outcome=outcome)
        async with services.pool.acquire() as connection:
            await repo.finish_import(connection, job)

    await asyncio.gather(*(one(job) for job in jobs))
    return len(jobs)


async def run_import_loop(services: Services, stop: asyncio.Event, poll_s: float = 2.0) -> None:
    """Apply queued imports until ``stop`` is set."""
    async with PhotoFetcher(services.settings.imports, services.settings.storage) as fetcher:
        while not stop.is_set():
            try:
                claimed = await drain_once(services, fetcher)
            except (TimeoutError, OSError) as error:  # the database away: try again later
                log.warning("import queue unavailable", error=str(error))
                claimed = 0
            if not claimed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), poll_s)
