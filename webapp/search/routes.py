"""Search API: by text, by photo, and more like an item."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from pydantic import BaseModel
from quart import Blueprint, Response
from quart_schema import (
    DataSource,
    document_response,
    validate_querystring,
    validate_request,
    validate_response,
)
from quart_schema.pydantic import File

from webapp.context import Services, services
from webapp.schemas import ErrorOut, Page, SearchHitOut, SearchPageOut, TextSearch, parse_item_id
from webapp.search.repo import Hit
from webapp.search.service import (
    SearchRequest,
    normalise_query,
    search_image,
    search_similar,
    search_stages,
    search_text,
)

blueprint = Blueprint("search", __name__)


class PhotoSearch(BaseModel):
    image: File


def to_request(args: TextSearch) -> SearchRequest:
    return SearchRequest(
        q=args.q,
        filters=args.filters(),
        mode=args.mode,
        sort=args.sort,
        min_score=args.min_score,
        limit=args.limit,
        offset=args.offset,
    )


async def page_out(svc: Services, hits: list[Hit], page: Page) -> SearchPageOut:
    items = [
        SearchHitOut(
            id=h.id,
            title=h.title,
            brand=h.brand,
            category=h.category,
            size=h.size,
            colour=h.colour,
            condition=h.condition,
            price=str(h.price),
            currency=h.currency.strip(),
            image_url=await svc.storage.url(h.image_key),
            score=None if h.score is None else round(h.score, 6),
            relevance=None if h.relevance is None else round(h.relevance, 6),
        )
        for h in hits
    ]
    full = len(items) == page.limit
    return SearchPageOut(
        items=items,
        limit=page.limit,
        offset=page.offset,
        next_offset=page.offset + page.limit if full else None,
    )


@blueprint.get("/api/search")
@validate_querystring(TextSearch)
@validate_response(SearchPageOut)
@document_response(ErrorOut, 422)
async def search(query_args: TextSearch) -> SearchPageOut:
    """Find garments matching a description (hybrid by default), or browse with filters only."""
    svc = services()
    hits = await search_text(svc, to_request(query_args))
    _learn(svc, query_args, hits)
    return await page_out(svc, hits, query_args)


def _learn(svc: Services, args: TextSearch, hits: list[Hit]) -> None:
    # Suggestions come from searches that found something, not from every keystroke.
    if args.q and hits and args.offset == 0:
        svc.query_log.record(normalise_query(args.q))


@blueprint.get("/api/search/stream")
@validate_querystring(TextSearch)
async def search_stream(query_args: TextSearch) -> Response:
    """Newline-delimited JSON: keyword hits as soon as they exist, then the final ranking.

    Each line is {"stage": "keyword" | "final", "items": [...]}; the last line is the final one.
    """
    svc = services()
    request = to_request(query_args)
    stages = search_stages(svc, request)
    # The first stage runs before the response starts, so bad state (model still loading)
    # is an ordinary JSON error and not a broken stream.
    first = await anext(stages)

    async def lines() -> AsyncIterator[bytes]:
        stage, hits = first
        while True:
            page = await page_out(svc, hits, query_args)
            if stage == "final":
                _learn(svc, query_args, hits)
            yield (json.dumps({"stage": stage, **page.model_dump()}) + "\n").encode()
            if stage == "final":
                return
            stage, hits = await anext(stages)

    response = Response(lines(), content_type="application/x-ndjson")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


@blueprint.post("/api/search/image")
@validate_querystring(Page)
@validate_request(PhotoSearch, source=DataSource.FORM_MULTIPART)
@validate_response(SearchPageOut)
@document_response(ErrorOut, 415)
async def search_by_photo(query_args: Page, data: PhotoSearch) -> SearchPageOut:
    """Find garments that look like an uploaded photo."""
    svc = services()
    hits = await search_image(svc, data.image.read(), query_args.limit, query_args.offset)
    return await page_out(svc, hits, query_args)


@blueprint.get("/api/items/<raw_id>/similar")
@validate_querystring(Page)
@validate_response(SearchPageOut)
@document_response(ErrorOut, 404)
async def similar(raw_id: str, query_args: Page) -> SearchPageOut:
    """Garments that look like this one (itself excluded)."""
    svc = services()
    item_id = parse_item_id(raw_id)
    hits = await search_similar(svc, item_id, query_args.limit, query_args.offset)
    return await page_out(svc, hits, query_args)
