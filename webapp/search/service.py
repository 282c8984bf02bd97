"""Search logic: normalise, look in the caches, embed, query, fill the caches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import numpy as np

from webapp.cache import query_key
from webapp.context import Services
from webapp.errors import ApiError
from webapp.images import check_image, decode_rgb
from webapp.items.repo import catalog_version
from webapp.search.repo import Hit, VectorQueries

VectorSource = Callable[[], Awaitable[np.ndarray]]


def normalise_query(text: str) -> str:
    # CLIP's tokenizer lower-cases and collapses whitespace itself, so these are the same query.
    return " ".join(text.lower().split())


def _queries(services: Services) -> VectorQueries:
    if services.queries is None:
        raise ApiError(503, "not_ready", "The search model is still loading; retry shortly.")
    return services.queries


async def _cached_page(
    services: Services,
    kind: str,
    subject: str,
    vector_for: VectorSource,
    limit: int,
    offset: int,
    exclude_id: int = 0,
) -> list[Hit]:
    """A result page from the result cache, or computed and cached under the catalog version."""
    queries = _queries(services)
    async with services.pool.acquire() as connection:
        version = await catalog_version(connection)
    key = query_key(kind, services.model_key, version, subject, limit, offset)
    cached = await services.cache.get_result(key)
    if cached is not None:
        return [Hit.from_json(hit) for hit in json.loads(cached)]
    vector = await vector_for()
    async with services.pool.acquire() as connection:
        hits = await queries.nearest(connection, vector, limit=limit, offset=offset, exclude_id=exclude_id)
    await services.cache.set_result(key, json.dumps([h.to_json() for h in hits]).encode())
    return hits


async def text_vector(services: Services, text: str) -> np.ndarray:
    cached = await services.cache.get_embedding(services.model_key, text)
    if cached is not None:
        return cached
    vector = await services.embedder.embed_text(text)
    await services.cache.set_embedding(services.model_key, text, vector)
    return vector


async def search_text(services: Services, q: str, limit: int, offset: int) -> list[Hit]:
    text = normalise_query(q)

    async def vector() -> np.ndarray:
        return await text_vector(services, text)

    return await _cached_page(services, "text", text, vector, limit, offset)


async def search_image(services: Services, data: bytes, limit: int, offset: int) -> list[Hit]:
    image = await asyncio.to_thread(check_image, data, services.settings.storage.max_image_bytes)
    subject = "img:" + image.sha256

    async def vector() -> np.ndarray:
        cached = await services.cache.get_embedding(services.model_key, subject)
        if cached is not None:
            return cached
        rgb = await asyncio.to_thread(decode_rgb, image.data)
        found = await services.embedder.embed_image(rgb)
        await services.cache.set_embedding(services.model_key, subject, found)
        return found

    return await _cached_page(services, "image", subject, vector, limit, offset)


async def search_similar(services: Services, item_id: int, limit: int, offset: int) -> list[Hit]:
    queries = _queries(services)
    async with services.pool.acquire() as connection:
        vector = await queries.item_vector(connection, item_id)
    if vector is None:
        raise ApiError(
            404,
            "not_found",
            f"Item {item_id} is not in search (it does not exist, was removed, or is not embedded yet).",
        )

    async def known() -> np.ndarray:
        return vector

    return await _cached_page(services, "similar", str(item_id), known, limit, offset, item_id)
