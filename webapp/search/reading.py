"""Reading a search request: the catalog's names and words, and constraints written in the query."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, replace
from decimal import Decimal

import asyncpg
from cachetools import LRUCache

from webapp.adapters.cache import query_key
from webapp.catalog.filters import Mode, SearchFilters, Sort
from webapp.search.forgive import load_synonyms
from webapp.search.parse import (
    ALIASES_FILE,
    Aliases,
    Parsed,
    Vocabulary,
    load_aliases,
    merge_filters,
    normalise_query,
    parse_query,
)
from webapp.search.repo import catalog_names, search_words
from webapp.services import Services


@dataclass(frozen=True)
class SearchRequest:
    q: str | None
    filters: SearchFilters = field(default_factory=SearchFilters)
    mode: Mode = Mode.HYBRID
    sort: Sort = Sort.RELEVANCE
    min_score: float | None = None
    limit: int = 20
    offset: int = 0

    def cache_key(self, model_key: str, version: int) -> str:
        text = self.q and normalise_query(self.q)
        return query_key(
            "text", model_key, version, text, self.filters.cache_key(), self.mode.value,
            self.sort.value, self.min_score, self.limit, self.offset,
        )  # fmt: skip


async def catalog_version(services: Services, known: int | None = None) -> int:
    """The catalog version that keys pages; ``known`` when the caller already read it for this
    request (the parse and the page key share one reading)."""
    return known if known is not None else await services.cache.catalog.current(services.pool)


@dataclass(frozen=True)
class CatalogWords:
    """What the catalog holds, for reading queries: names for filters, words for corrections."""

    names: Vocabulary
    words: dict[str, int]


@functools.cache
def shipped() -> tuple[Aliases, dict[str, tuple[str, ...]]]:
    """The editable lists shipped with the service (aliases, synonyms), read once."""
    return load_aliases(ALIASES_FILE), load_synonyms()


# Per pool (held, so its id is not reused): the catalog version and its words. Kept across
# requests: reading every brand, colour and word per search would cost more than the search.
_CATALOG_WORDS: LRUCache[int, tuple[asyncpg.Pool, int, CatalogWords]] = LRUCache(maxsize=8)


async def catalog_words(services: Services, version: int | None = None) -> CatalogWords:
    """The catalog's names and words, read again only when the catalog changes."""
    version = await catalog_version(services, version)
    entry = _CATALOG_WORDS.get(id(services.pool))
    if entry is not None and entry[0] is services.pool and entry[1] == version:
        return entry[2]

    async def read(connection: asyncpg.Connection) -> tuple[tuple[list[str], list[str]], dict[str, int]]:
        return await catalog_names(connection), await search_words(connection)

    (brands, colours), words = await services.reads.run(version, read)
    found = CatalogWords(Vocabulary.build(brands, colours, shipped()[0]), words)
    _CATALOG_WORDS[id(services.pool)] = (services.pool, version, found)
    return found


async def understand(
    services: Services, request: SearchRequest, version: int | None = None
) -> tuple[SearchRequest, Parsed | None]:
    """Constraints written in the query become filters; filters given as parameters win.

    Returns the request to run and, when something was taken out of the query, what was read.
    """
    if request.q is None:
        return request, None
    parsed = parse_query(request.q, (await catalog_words(services, version)).names)
    if not parsed.changed:
        return request, None
    explicit = {name: getattr(request.filters, name) for name in SearchFilters.__dataclass_fields__}
    applied = merge_filters(explicit, parsed.filters)
    typed: dict[str, object] = {
        name: Decimal(value) if name.startswith("price_") else value for name, value in applied.items()
    }
    filters = replace(request.filters, **typed)  # type: ignore[arg-type]
    return replace(request, q=parsed.q or None, filters=filters), Parsed(parsed.q, applied)
