"""``prethrift ingest`` for import catalogs: listings read, photos fetched, items stored, in
three stages joined by bounded queues, so fetching runs ahead of storing (and of the worker's
embedding, which starts as each item is stored) without holding more than a few listings'
photos in memory.

Idempotent and resumable: a listing whose fields and photo sources hash as they did at its
last successful load is "unchanged" and neither fetched nor stored; a photo fetched before is
asked for with its validators and taken from the local cache when the source says it has not
changed. So a re-run after a failure fetches only what failed. Listings of an earlier run of
the same file that are missing now are reported, and deleted only when asked.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
from tqdm import tqdm

from webapp.http.errors import ApiError
from webapp.imports import repo
from webapp.imports.apply import PhotoCache, fetch_photos, fingerprint, remove, store
from webapp.imports.catalog import ImportCatalog, Listing
from webapp.imports.fetch import FetchError, PhotoFetcher
from webapp.imports.guard import Resolver, system_resolver
from webapp.services import Services

_DONE = None
# Listings stored at once: each checks and decodes its new photos in the decoder's processes.
STORERS = 2


@dataclass
class ImportSummary:
    loaded: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    deleted: int = 0
    downloads: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return len(self.failures)

    def lines(self) -> list[str]:
        out = [
            f"loaded {self.loaded}, updated {self.updated}, unchanged {self.unchanged}, "
            f"skipped {self.skipped}, failed {self.failed} ({self.downloads} photo(s) downloaded)"
        ]
        if self.missing:
            gone = "deleted" if self.deleted else "still listed; --delete-missing removes them"
            named = ", ".join(self.missing[:20]) + (" ..." if len(self.missing) > 20 else "")
            out.append(
                f"{len(self.missing)} listing(s) of an earlier run are not in the file ({gone}): {named}"
            )
        return out


def _print(line: str) -> None:
    tqdm.write(line)


async def run_import(
    services: Services,
    listings: Iterator[Listing],
    fetcher: PhotoFetcher,
    origin: str,
    *,
    delete_missing: bool = False,
    report: Callable[[str], None] = _print,
    summary: ImportSummary | None = None,
    progress: bool = True,
) -> ImportSummary:
    """Import ``listings`` (from the file ``origin`` names); ``summary`` fills as they finish."""
    summary = summary if summary is not None else ImportSummary()
    cache = PhotoCache(services.settings.data_dir / "import-cache")
    width = services.settings.imports.concurrency
    to_fetch: asyncio.Queue[Listing | None] = asyncio.Queue(maxsize=2 * width)
    # Fetched photos wait here for the store stage: few, since each listing may hold megabytes.
    to_store: asyncio.Queue[tuple[Listing, list[bytes]] | None] = asyncio.Queue(maxsize=STORERS)
    seen: set[str] = set()
    bars = {
        name: tqdm(desc=name, unit=unit, position=n, leave=True, disable=not progress)
        for n, (name, unit) in enumerate((("fetch", "listing"), ("store", "listing"), ("embed", "photo")))
    }
    queued_items: list[int] = []

    async def watch_embedding() -> None:
        # The worker embeds as items are stored; the bar follows its progress on this run's items.
        while True:
            await asyncio.sleep(1.0)
            if not queued_items:
                continue
            try:
                async with services.pool.acquire() as connection:
                    done = await connection.fetchval(
                        "SELECT count(*) FROM embedding_jobs WHERE item_id = ANY($1::bigint[]) "
                        "AND status = 'done'",
                        queued_items,
                    )
            except (OSError, asyncpg.PostgresError):
                continue  # only a progress bar: the load itself reports database trouble
            bars["embed"].update(done - bars["embed"].n)

    def fail(listing: Listing, reason: str) -> None:
        summary.failures.append((listing.where, reason))
        report(f"  {listing.where} ({listing.external_id or 'no id'}): {reason}")

    async def read() -> None:
        while (listing := await asyncio.to_thread(next, listings, None)) is not None:
            if listing.external_id:
                seen.add(listing.external_id)
            if listing.problem is not None:
                fail(listing, listing.problem)
            elif not listing.listed:
                summary.skipped += 1
                seen.discard(listing.external_id)  # a drafted product counts as gone from the shop
            else:
                async with services.pool.acquire() as connection:
                    known = await repo.fingerprints(connection, [listing.external_id])
                if known.get(listing.external_id) == fingerprint(listing.fields, listing.photos):
                    summary.unchanged += 1
                else:
                    bars["fetch"].total = (bars["fetch"].total or 0) + 1
                    await to_fetch.put(listing)
        for _ in range(width):
            await to_fetch.put(_DONE)

    async def fetch() -> None:
        while (listing := await to_fetch.get()) is not _DONE:
            try:
                photos, downloads = await fetch_photos(services, fetcher, cache, listing.photos)
            except FetchError as error:
                fail(listing, error.message)
            else:
                summary.downloads += downloads
                bars["store"].total = (bars["store"].total or 0) + 1
                await to_store.put((listing, photos))
            bars["fetch"].update()

    async def keep() -> None:
        while (work := await to_store.get()) is not _DONE:
            listing, photos = work
            try:
                stored = await store(services, listing.external_id, listing.fields, photos)
            except asyncpg.DataError as error:  # a value the schema let through, the database cannot store
                fail(listing, f"the database refused the listing: {error}")
            except ApiError as error:
                if error.status == 409:
                    summary.skipped += 1
                    report(f"  {listing.where} ({listing.external_id}): skipped, {error.message}")
                else:
                    fail(listing, error.message)
            else:
                async with services.pool.acquire() as connection:
                    loaded_from = fingerprint(listing.fields, listing.photos)
                    await repo.record_listing(
                        connection, listing.external_id, origin, loaded_from, listing.product_id
                    )
                if stored.photos_queued:
                    queued_items.append(stored.item_id)
                    bars["embed"].total = (bars["embed"].total or 0) + stored.photos_queued
                if stored.outcome == "created":
                    summary.loaded += 1
                elif stored.outcome == "updated":
                    summary.updated += 1
                else:
                    summary.unchanged += 1
            bars["store"].update()

    async def fetch_all() -> None:
        await asyncio.gather(*(fetch() for _ in range(width)))
        for _ in range(STORERS):
            await to_store.put(_DONE)

    watching = asyncio.create_task(watch_embedding()) if progress else None
    try:
        await asyncio.gather(read(), fetch_all(), *(keep() for _ in range(STORERS)))
    finally:
        if watching is not None:
            watching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watching
        for bar in bars.values():
            bar.close()
    async with services.pool.acquire() as connection:
        summary.missing = sorted(await repo.listings_from(connection, origin) - seen)
    if delete_missing:
        for external_id in summary.missing:
            summary.deleted += int(await remove(services, external_id))
    return summary


async def import_file(
    services: Services,
    path: Path,
    images: Path | None,
    delete_missing: bool = False,
    summary: ImportSummary | None = None,
    *,
    resolver: Resolver = system_resolver,
    report: Callable[[str], None] = _print,
    progress: bool = True,
) -> ImportSummary:
    """Import a catalog file (ValueError when it is not one); the summary of what happened."""
    with ImportCatalog(path) as catalog:
        report(f"{path.name}: {catalog.kind}")
        async with PhotoFetcher(
            services.settings.imports, services.settings.storage, local_root=images, resolver=resolver
        ) as fetcher:
            return await run_import(
                services, catalog.listings(), fetcher, f"file:{path.name}",
                delete_missing=delete_missing, report=report, summary=summary, progress=progress,
            )  # fmt: skip
