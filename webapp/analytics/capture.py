"""What a search route hands the search log: one ``SearchWatch`` per search request."""

from __future__ import annotations

import time
from dataclasses import fields

from quart import g, has_request_context

from webapp.adapters.cache import RESULT_LOOKUPS
from webapp.analytics.log import SearchLog, SearchRecord, new_search_id
from webapp.catalog.filters import SearchFilters
from webapp.http.schemas import Interpreted, PhotoPage, TextSearch


def _normalised(text: str) -> str:
    # As search normalises a query (webapp.search.parse.normalise_query): one spelling per query.
    return " ".join(text.lower().split())


def given_filters(filters: SearchFilters) -> dict[str, str]:
    """The filters a request gave as parameters, by parameter name, values as text."""
    found = {f.name: getattr(filters, f.name) for f in fields(filters)}
    return {name: str(value) for name, value in found.items() if value is not None}


class SearchWatch:
    """Made as a search request starts: its id, and whether its page came from the result cache;
    ``text`` or ``photo`` queues its log row once the answer is built (never waiting on the log)."""

    def __init__(self, session_id: str | None) -> None:
        self.search_id = new_search_id()
        self.session_id = session_id
        started = g.get("started") if has_request_context() else None
        self.started: float = started if isinstance(started, float) else time.perf_counter()
        # The first result-cache look-up of a search is its page's.
        self._lookups: list[bool] = []
        RESULT_LOOKUPS.set(self._lookups)

    @property
    def cached(self) -> bool:
        return bool(self._lookups) and self._lookups[0]

    def _latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def text(self, log: SearchLog, args: TextSearch, interpreted: Interpreted | None, results: int) -> None:
        query = _normalised(args.q) if args.q else ""
        log.record(
            SearchRecord(
                search_id=self.search_id,
                session_id=self.session_id,
                kind="text" if query else "browse",
                mode=args.mode.value if query else "browse",
                results=results,
                cached=self.cached,
                latency_ms=self._latency_ms(),
                query=query,
                terms=_normalised(interpreted.q) if interpreted is not None else query,
                given=given_filters(args.filters()),
                parsed=dict(interpreted.filters) if interpreted is not None else {},
                page_offset=args.offset,
            )
        )

    def photo(self, log: SearchLog, args: PhotoPage, results: int) -> None:
        log.record(
            SearchRecord(
                search_id=self.search_id,
                session_id=self.session_id,
                kind="photo",
                mode="photo",
                results=results,
                cached=self.cached,
                latency_ms=self._latency_ms(),
                page_offset=args.offset,
            )
        )
