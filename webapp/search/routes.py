"""Search API: by text, by photo, and more like an item."""

from __future__ import annotations

from collections.abc import AsyncIterator

from pydantic import BaseModel
from quart import Blueprint, Response, stream_with_context
from quart_schema import (
    DataSource,
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)
from quart_schema.pydantic import File

from webapp.analytics.capture import SearchWatch
from webapp.analytics.log import search_log_of
from webapp.catalog.filters import parse_facet_names
from webapp.http.jsonio import dumps_bytes
from webapp.http.ratelimit import current_client, rate_limited
from webapp.http.schemas import (
    Interpreted,
    Page,
    PhotoPage,
    SearchHitOut,
    SearchPageOut,
    StreamLineOut,
    TextSearch,
    document_errors,
    parse_item_id,
)
from webapp.search.parse import normalise_query
from webapp.search.reading import SearchRequest, catalog_version, understand
from webapp.search.repo import Hit
from webapp.search.service import (
    facet_counts,
    one_request,
    search_image,
    search_similar,
    search_stages,
    search_text,
)
from webapp.services import Services, services

blueprint = Blueprint("search", __name__)


class PhotoSearch(BaseModel):
    image: File


async def to_request(svc: Services, args: TextSearch, version: int) -> tuple[SearchRequest, Interpreted | None]:
    """The search to run, after reading constraints out of q (unless ``parse=false``), against
    the catalog as of ``version``."""
    request = SearchRequest(
        q=args.q,
        filters=args.filters(),
        mode=args.mode,
        sort=args.sort,
        min_score=args.min_score,
        limit=args.limit,
        offset=args.offset,
    )
    if not args.parse:
        return request, None
    request, parsed = await understand(svc, request, version)
    return request, None if parsed is None else Interpreted(q=parsed.q, filters=parsed.filters)


async def page_out(
    svc: Services,
    hits: list[Hit],
    page: Page,
    interpreted: Interpreted | None = None,
    search_id: str | None = None,
) -> SearchPageOut:
    items = [SearchHitOut.from_row(h, await svc.storage.url(h.image_key)) for h in hits]
    full = len(items) == page.limit
    return SearchPageOut(
        items=items,
        limit=page.limit,
        offset=page.offset,
        next_offset=page.offset + page.limit if full else None,
        interpreted=interpreted,
        search_id=search_id,
    )


@blueprint.get("/api/search")
@rate_limited("search")
@validate_querystring(TextSearch)
@validate_response(SearchPageOut)
@document_errors(422, 503)
async def search(query_args: TextSearch) -> SearchPageOut:
    """Find garments matching a description (hybrid by default), or browse with filters only."""
    svc = services()
    watch = SearchWatch(query_args.session_id)
    # Read once: the parse, the page and its facets see the same catalog.
    version = await catalog_version(svc)
    request, interpreted = await to_request(svc, query_args, version)
    with one_request():  # the facets count the candidates the page was ranked from
        hits = await search_text(svc, request, version)
        _learn(svc, query_args, hits, current_client())
        page = await page_out(svc, hits, query_args, interpreted, watch.search_id)
        page = await with_facets(svc, page, request, query_args, version)
    watch.text(search_log_of(svc), query_args, interpreted, len(hits))
    return page


async def with_facets(
    svc: Services, page: SearchPageOut, request: SearchRequest, args: TextSearch, version: int
) -> SearchPageOut:
    """The page with the facet counts asked for, if any."""
    if args.facets is None:
        return page
    counts = await facet_counts(svc, request, parse_facet_names(args.facets), version)
    return SearchPageOut.model_validate(
        {**page.model_dump(), "facets": counts.values, "facets_scope": counts.scope}
    )


def _learn(svc: Services, args: TextSearch, hits: list[Hit], client: str) -> None:
    # Suggestions come from searches that found something, not from every keystroke.
    if args.q and hits and args.offset == 0:
        svc.query_log.record(normalise_query(args.q), client)


@blueprint.get("/api/search/stream")
@rate_limited("search")
@validate_querystring(TextSearch)
@document_response(StreamLineOut)
@document_errors(422, 503)
async def search_stream(query_args: TextSearch) -> Response:
    """Newline-delimited JSON: keyword hits as soon as they exist, then the final ranking.

    Each line is {"stage": "keyword" | "final", "items": [...]}; the last line is the final one,
    and carries the facet counts when they were asked for.
    """
    svc = services()
    watch = SearchWatch(query_args.session_id)
    version = await catalog_version(svc)
    request, interpreted = await to_request(svc, query_args, version)
    stages = search_stages(svc, request, version)
    # The first stage runs before the response starts, so bad state (model still loading)
    # is an ordinary JSON error and not a broken stream.
    first = await anext(stages)

    # The body is sent after the view returns: the request context goes with it, for the
    # client's fair share of the facet counts.
    @stream_with_context
    async def lines() -> AsyncIterator[bytes]:
        stage, hits = first
        while True:
            page = await page_out(svc, hits, query_args, interpreted, watch.search_id)
            if stage == "final":
                _learn(svc, query_args, hits, current_client())
                page = await with_facets(svc, page, request, query_args, version)
                watch.text(search_log_of(svc), query_args, interpreted, len(hits))
            yield dumps_bytes({"stage": stage, **page.model_dump()}) + b"\n"
            if stage == "final":
                return
            stage, hits = await anext(stages)

    response = Response(lines(), content_type="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@blueprint.post("/api/search/image")
@rate_limited("photo_search")
@validate_querystring(PhotoPage)
@validate_request(PhotoSearch, source=DataSource.FORM_MULTIPART)
@validate_response(SearchPageOut)
@document_errors(413, 415, 422, 503)
async def search_by_photo(query_args: PhotoPage, data: PhotoSearch) -> SearchPageOut:
    """Find garments that look like an uploaded photo."""
    svc = services()
    watch = SearchWatch(query_args.session_id)
    hits = await search_image(svc, data.image.read(), query_args.limit, query_args.offset)
    page = await page_out(svc, hits, query_args, search_id=watch.search_id)
    watch.photo(search_log_of(svc), query_args, len(hits))
    return page


@blueprint.get("/api/items/<raw_id>/similar")
@rate_limited("similar")
@validate_querystring(Page)
@validate_response(SearchPageOut)
@document_errors(400, 404, 422, 503)
async def similar(raw_id: str, query_args: Page) -> SearchPageOut:
    """Garments that look like this one (itself excluded)."""
    svc = services()
    item_id = parse_item_id(raw_id)
    hits = await search_similar(svc, item_id, query_args.limit, query_args.offset)
    return await page_out(svc, hits, query_args)
