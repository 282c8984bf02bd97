"""One listing from an import, applied: its photos fetched (what was fetched before is asked for
conditionally and kept in a local cache), then stored through the same upsert as
``PUT /api/items/external/{id}``, or removed. Catalog files and webhooks both come here."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from webapp.imports import repo
from webapp.imports.fetch import FetchError, PhotoFetcher
from webapp.services import Services


@dataclass(frozen=True)
class Stored:
    """What storing a listing did: "created", "updated" or "unchanged", and photos queued to embed."""

    outcome: str
    item_id: int
    photos_queued: int


def fingerprint(fields: dict[str, str], photos: list[str]) -> str:
    """What a listing was loaded from, as one hash: equal means nothing to fetch or store."""
    text = json.dumps({"fields": sorted(fields.items()), "photos": photos}, ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


class PhotoCache:
    """Fetched photos by content hash under a folder, so a source that answers "not modified"
    still gives its bytes to the upsert (which compares photos by content)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def get(self, sha256: str) -> bytes | None:
        try:
            data = self._path(sha256).read_bytes()
        except OSError:
            return None
        return data if hashlib.sha256(data).hexdigest() == sha256 else None

    def put(self, sha256: str, data: bytes) -> None:
        path = self._path(sha256)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".fetch-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


async def fetch_photos(
    services: Services, fetcher: PhotoFetcher, cache: PhotoCache, sources: list[str]
) -> tuple[list[bytes], int]:
    """The photos at ``sources`` in order, and how many were downloaded (not answered from the
    cache). Raises FetchError naming the first photo that could not be had."""
    async with services.pool.acquire() as connection:
        known = await repo.cached_sources(connection, sources)

    async def one(source: str) -> tuple[bytes, bool]:
        cached = known.get(source)
        kept = cache.get(cached.sha256) if cached else None
        try:
            got = await fetcher.fetch(source, cached.validators if cached and kept is not None else None)
        except FetchError as error:
            raise FetchError(error.kind, f"photo {source}: {error.message}") from None
        if got.data is None and kept is not None:
            return kept, False
        assert got.data is not None, "a fetch without validators always has the bytes"
        sha = hashlib.sha256(got.data).hexdigest()
        cache.put(sha, got.data)
        if "://" in source:  # local files are read again each time: no validators to ask with
            async with services.pool.acquire() as connection:
                await repo.record_source(connection, source, sha, got.validators)
        return got.data, True

    # The fetcher bounds how many run at once, over all listings.
    results = await asyncio.gather(*(one(source) for source in sources))
    return [data for data, _ in results], sum(downloaded for _, downloaded in results)


async def store(services: Services, external_id: str, fields: dict[str, str], photos: list[bytes]) -> Stored:
    """Create or update the listing through the external-id upsert. Raises ApiError as the PUT
    route would answer."""
    from webapp.items.service import parse_fields
    from webapp.items.upsert import upsert_external

    result = await upsert_external(services, external_id, parse_fields(fields), photos)
    return Stored(str(result.outcome), result.item_id, result.photos_queued)


async def remove(services: Services, external_id: str) -> bool:
    """Take the listing out of the catalog; False when there was none."""
    from webapp.items.external import delete_external

    async with services.pool.acquire() as connection:
        await repo.forget_listing(connection, external_id)
    removed: bool = await delete_external(services, external_id)
    return removed
