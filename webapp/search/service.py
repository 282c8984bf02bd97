"""Search: semantic, keyword and hybrid ranking, result pages and their cache, query embedding.

Reading the request (the catalog's names, constraints in the query) is reading.py's; matching
that forgives typos and missing words is forgive.py's. Nothing here reads request state: the
routes pass what a search needs, the catalog version included.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from functools import partial

import asyncpg
import numpy as np
import orjson

from webapp.adapters.cache import query_key
from webapp.catalog.filters import Mode, SearchFilters, Sort
from webapp.http.errors import ApiError, ModelNotReady
from webapp.http.jsonio import dumps_bytes
from webapp.http.ratelimit import fair_share
from webapp.search.facets import FacetCounts, count_facets
from webapp.search.forgive import CANDIDATES, FORGIVE_BELOW, forgive
from webapp.search.parse import normalise_query
from webapp.search.reading import SearchRequest, catalog_version, catalog_words, shipped
from webapp.search.repo import Hit, VectorQueries, loaded_queries
from webapp.services import Services

VectorSource = Callable[[], Awaitable[np.ndarray]]
# Reciprocal rank fusion constant (Cormack et al. 2009; Marqo and others use 60 too).
RRF_K = 60
SEMANTIC_DEPTH = 100


# Candidate lists computed while one request runs, by what they were computed from: a search
# and its facet counts then rank the same candidates once.
_RANKED: ContextVar[dict[tuple[object, ...], list[Hit]] | None] = ContextVar("search_ranked", default=None)


@contextlib.contextmanager
def one_request() -> Iterator[None]:
    """Within this block, a candidate list computed twice is computed once."""
    token = _RANKED.set({})
    try:
        yield
    finally:
        _RANKED.reset(token)


async def _remembered(key: tuple[object, ...], compute: Callable[[], Awaitable[list[Hit]]]) -> list[Hit]:
    ranked = _RANKED.get()
    if ranked is None:
        return await compute()
    if key not in ranked:
        ranked[key] = await compute()
    return ranked[key]


def _queries(services: Services) -> VectorQueries:
    queries = loaded_queries(services)
    if queries is None:
        raise ModelNotReady()
    return queries


async def _cached(services: Services, key: str) -> list[Hit] | None:
    cached = await services.cache.get_result(key)
    if cached is None:
        return None
    return [Hit.from_json(hit) for hit in orjson.loads(cached)]


async def _store(services: Services, key: str, hits: list[Hit]) -> None:
    await services.cache.set_result(key, dumps_bytes([h.to_json() for h in hits]))


async def keyword_ranking(
    services: Services,
    queries: VectorQueries,
    text: str,
    filters: SearchFilters,
    *,
    beside_vectors: bool = False,
    version: int | None = None,
) -> list[Hit]:
    """Exact keyword matches first (phrases, brand and model), then forgiving ones, best first.

    ``beside_vectors``: the ranking is fused with a vector search (hybrid), which already ranks
    items that share only a word or two with the query; the forgiving passes then stop at half
    the query's words instead of ranking every item that holds one of them, and judge words on
    the whole catalog (webapp.search.forgive.forgive). ``version``: the
    catalog version, when the caller has read it for this request.
    """

    async def compute() -> list[Hit]:
        exact = await services.reads.run(
            version, lambda connection: queries.keyword(connection, text, limit=CANDIDATES, filters=filters)
        )
        if len(exact) >= FORGIVE_BELOW:
            return exact
        words = (await catalog_words(services, version)).words
        return await services.reads.run(
            version,
            lambda connection: forgive(
                connection, queries, text, filters, exact, words, shipped()[1], beside_vectors=beside_vectors
            ),
        )

    return await _remembered(("keyword", text, filters.cache_key(), beside_vectors, version), compute)


async def nearest_candidates(
    services: Services,
    queries: VectorQueries,
    vector: np.ndarray,
    text: str,
    filters: SearchFilters,
    version: int,
) -> list[Hit]:
    """The SEMANTIC_DEPTH items nearest the query's vector under the filters."""
    return await _remembered(
        ("nearest", text, filters.cache_key(), version),
        lambda: services.reads.run(version, partial(_nearest, queries, vector, filters)),
    )


async def facet_counts(
    services: Services, request: SearchRequest, names: tuple[str, ...], version: int | None = None
) -> FacetCounts:
    """Disjunctive counts: exact over the filtered catalog when browsing, else over the candidates."""
    queries = _queries(services)
    text = request.q and normalise_query(request.q)
    version = await catalog_version(services, version)
    key = query_key(
        "facets", services.model_key, version, text, request.filters.cache_key(),
        request.mode.value, names,
    )  # fmt: skip
    cached = await services.cache.get_result(key)
    if cached is not None:
        return FacetCounts.from_json(cached)
    async with fair_share("search"):
        counts = await _count_facets(services, queries, request, names, text, version)
    await services.cache.set_result(key, counts.to_json().encode())
    return counts


async def _count_facets(
    services: Services,
    queries: VectorQueries,
    request: SearchRequest,
    names: tuple[str, ...],
    text: str | None,
    version: int,
) -> FacetCounts:
    candidates: list[int] | None = None
    if text is not None:
        # The set pages are drawn from (the search's own candidates, which this request has
        # ranked already), and the same without filters, so that a field's own filter does not
        # hide its other values. Without filters the words' matches are taken as they come,
        # unranked: they only show the values the filters hide, and ranking every item that
        # holds a common word ("jeans") cost more than the search itself.
        found: dict[int, None] = {}
        vector = None if request.mode is Mode.KEYWORD else await text_vector(services, text)
        beside = request.mode is Mode.HYBRID
        if request.mode is not Mode.SEMANTIC:
            ranked = await keyword_ranking(
                services, queries, text, request.filters, beside_vectors=beside, version=version
            )
            found.update(dict.fromkeys(h.id for h in ranked))
            if request.filters.active:
                found.update(dict.fromkeys(await _matching(services, queries, text, version)))
        if vector is not None:
            for filters in [request.filters, SearchFilters()] if request.filters.active else [request.filters]:
                near = await nearest_candidates(services, queries, vector, text, filters, version)
                found.update(dict.fromkeys(h.id for h in near))
        candidates = list(found)
    values = await services.reads.run(
        version, lambda connection: count_facets(connection, names, request.filters, candidates)
    )
    return FacetCounts(values, "exact" if candidates is None else "candidates")


async def _matching(services: Services, queries: VectorQueries, text: str, version: int) -> list[int]:
    """Up to CANDIDATES items holding the words, unranked; forgiving when too few hold them all."""
    ids = await services.reads.run(
        version, lambda connection: queries.keyword_ids(connection, text, limit=CANDIDATES)
    )
    if len(ids) >= FORGIVE_BELOW:
        return ids
    return [h.id for h in await keyword_ranking(services, queries, text, SearchFilters(), version=version)]


async def _nearest(
    queries: VectorQueries, vector: np.ndarray, filters: SearchFilters, connection: asyncpg.Connection
) -> list[Hit]:
    return await queries.nearest(connection, vector, limit=SEMANTIC_DEPTH, filters=filters)


async def text_vector(services: Services, text: str) -> np.ndarray:
    cached = await services.cache.get_embedding(services.model_key, text)
    if cached is not None:
        return cached
    vector = await services.embedder.embed_text(text)
    await services.cache.set_embedding(services.model_key, text, vector)
    return vector


def _sorted(hits: list[Hit], sort: Sort) -> list[Hit]:
    if sort is Sort.PRICE_ASC:
        return sorted(hits, key=lambda h: (h.price, h.id))
    if sort is Sort.PRICE_DESC:
        return sorted(hits, key=lambda h: (-h.price, -h.id))
    if sort is Sort.NEWEST:
        return sorted(hits, key=lambda h: (h.created_at, h.id), reverse=True)
    return hits


def fuse(
    semantic: list[Hit], keyword: list[Hit], scores: dict[int, float], page: slice | None = None
) -> list[Hit]:
    """Reciprocal rank fusion of the two rankings; ties go to the lower id, so pages are stable.

    ``page``: only these places of the fused ranking (the others are ranked, not built)."""
    fused: dict[int, float] = {}
    by_id: dict[int, Hit] = {}
    for ranking in (semantic, keyword):
        for rank, hit in enumerate(ranking, start=1):
            fused[hit.id] = fused.get(hit.id, 0.0) + 1.0 / (RRF_K + rank)
            by_id.setdefault(hit.id, hit)
    order = sorted(fused, key=lambda item_id: (-fused[item_id], item_id))
    if page is not None:
        order = order[page]
    return [
        Hit(**{**by_id[i].__dict__, "score": scores.get(i, by_id[i].score), "relevance": round(fused[i], 6)})
        for i in order
    ]


async def search_stages(
    services: Services, request: SearchRequest, version: int | None = None
) -> AsyncIterator[tuple[str, list[Hit]]]:
    """Yield ('keyword', early hits) when they come before the model, then ('final', the page).

    The normal endpoint keeps only the final page; the streaming endpoint sends both. ``version``:
    the catalog version, when the caller has read it for this request (the parse and the page
    key then share one reading).
    """
    queries = _queries(services)
    version = await catalog_version(services, version)
    key = request.cache_key(services.model_key, version)
    cached = await _cached(services, key)
    if cached is not None:
        yield "final", cached
        return
    # Held while the page is computed, and given back before the final page goes out (the
    # stream's caller may hold that for as long as its client reads).
    final: list[Hit] = []
    async with fair_share("search"):
        async for stage, hits in _compute(services, queries, request, key, version):
            if stage == "final":
                final = hits
            else:
                yield stage, hits
    yield "final", final


async def _compute(
    services: Services, queries: VectorQueries, request: SearchRequest, key: str, version: int
) -> AsyncIterator[tuple[str, list[Hit]]]:
    """Every way to a page ends here: the page is cached once and yielded as the final stage."""
    if request.q is None:
        hits = await services.reads.run(
            version,
            lambda connection: queries.browse(
                connection, filters=request.filters, sort=request.sort, limit=request.limit,
                offset=request.offset,
            ),
        )  # fmt: skip
    elif request.mode is Mode.KEYWORD:
        text = normalise_query(request.q)
        ranked = await keyword_ranking(services, queries, text, request.filters, version=version)
        hits = _page(_sorted(ranked, request.sort), request)
    else:
        hits = []
        ranking = _ranked_by_vector(services, queries, request, normalise_query(request.q), version)
        async for stage, found in ranking:
            if stage == "final":
                hits = found
            else:
                yield stage, found
    await _store(services, key, hits)
    yield "final", hits


def _page(ranked: list[Hit], request: SearchRequest) -> list[Hit]:
    return ranked[request.offset : request.offset + request.limit]


async def _ranked_by_vector(
    services: Services, queries: VectorQueries, request: SearchRequest, text: str, version: int
) -> AsyncIterator[tuple[str, list[Hit]]]:
    """Semantic or hybrid: yields ('keyword', early hits) in hybrid mode, then ('final', the page)."""
    filters = request.filters
    keyword: list[Hit] = []
    if request.mode is Mode.HYBRID:
        embedding = asyncio.create_task(text_vector(services, text))
        try:
            keyword = await keyword_ranking(
                services, queries, text, filters, beside_vectors=True, version=version
            )
            if keyword:
                yield "keyword", _sorted(keyword, request.sort)[: request.limit]
            vector = await embedding
        finally:
            embedding.cancel()
    else:
        vector = await text_vector(services, text)
    if not keyword and request.sort is Sort.RELEVANCE and request.min_score is None:
        # Nothing to fuse or re-sort (semantic mode, or a hybrid query that matches no listing
        # word for word, as most long ones): this very page comes straight from the index.
        # Same query, same choice on every page.
        page = await services.reads.run(
            version,
            lambda connection: queries.nearest(
                connection, vector, limit=request.limit, offset=request.offset, filters=filters
            ),
        )
        yield "final", page
        return

    # Fused and re-sorted rankings are built over a fixed candidate set, so that every page
    # of a query cuts the same list: no item twice, none skipped.
    semantic = await nearest_candidates(services, queries, vector, text, filters, version)
    near = {h.id for h in semantic}
    missing = [h.id for h in keyword if h.id not in near]
    scores = (
        await services.reads.run(version, lambda connection: queries.scores(connection, vector, missing))
        if missing
        else {}
    )
    if request.mode is Mode.HYBRID and request.sort is Sort.RELEVANCE and request.min_score is None:
        yield "final", fuse(semantic, keyword, scores, slice(request.offset, request.offset + request.limit))
        return
    ranked = fuse(semantic, keyword, scores) if request.mode is Mode.HYBRID else semantic
    if request.min_score is not None:
        exact = {h.id for h in keyword}
        ranked = [h for h in ranked if h.id in exact or (h.score or 0.0) >= request.min_score]
    yield "final", _page(_sorted(ranked, request.sort), request)


async def search_text(services: Services, request: SearchRequest, version: int | None = None) -> list[Hit]:
    """The final page of a text search (``search_stages`` without the early keyword stage)."""
    final: list[Hit] = []
    async for stage, hits in search_stages(services, request, version):
        if stage == "final":
            final = hits
    return final


# Whose in-flight slots a vector page on a cache miss takes (webapp.http.ratelimit), by kind.
FAIR_SHARE = {"image": "photo_search", "similar": "similar"}


async def _vector_page(
    services: Services, kind: str, subject: str, vector_for: VectorSource, limit: int, offset: int,
    exclude_id: int = 0,
) -> list[Hit]:  # fmt: skip
    """A page of nearest items, from the result cache or computed and cached."""
    queries = _queries(services)
    version = await catalog_version(services)
    key = query_key(kind, services.model_key, version, subject, limit, offset)
    cached = await _cached(services, key)
    if cached is not None:
        return cached
    async with fair_share(FAIR_SHARE[kind]):
        vector = await vector_for()
        hits = await services.reads.run(
            version,
            lambda connection: queries.nearest(
                connection, vector, limit=limit, offset=offset, exclude_id=exclude_id
            ),
        )
    await _store(services, key, hits)
    return hits


async def search_image(services: Services, data: bytes, limit: int, offset: int) -> list[Hit]:
    # The header is checked at once; pixels are decoded once, only on a cache miss, and only
    # while the decode budget has room for them.
    header = await services.photos.header(data, for_model=True)
    subject = "img:" + hashlib.sha256(data).hexdigest()

    async def vector() -> np.ndarray:
        cached = await services.cache.get_embedding(services.model_key, subject)
        if cached is not None:
            return cached
        rgb = await services.photos.for_model(data, header)
        found = await services.embedder.embed_image(rgb)
        await services.cache.set_embedding(services.model_key, subject, found)
        return found

    return await _vector_page(services, "image", subject, vector, limit, offset)


async def search_similar(services: Services, item_id: int, limit: int, offset: int) -> list[Hit]:
    queries = _queries(services)
    vector = await services.reads.run(
        await catalog_version(services), lambda connection: queries.item_vector(connection, item_id)
    )
    if vector is None:
        raise ApiError(
            404,
            "not_found",
            f"Item {item_id} is not in search (it does not exist, was removed, or is not embedded yet).",
        )

    async def known() -> np.ndarray:
        return vector

    return await _vector_page(services, "similar", str(item_id), known, limit, offset, item_id)
