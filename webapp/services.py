"""The long-lived clients one process holds, opened at start-up and passed to features."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
from quart import current_app

from webapp.adapters.cache import Cache
from webapp.adapters.replica import ReadPools
from webapp.adapters.storage import Storage
from webapp.config import Settings
from webapp.embedding.embedder import Embedder
from webapp.embedding.photo_decoder import DecodeBudget, PhotoDecoder
from webapp.http.errors import DatabaseOutage


# What the process holds for its features, by what start-up, shutdown and the other features
# call on it: the features (below this module's importers) build them in runtime.py and reach
# their own concrete types through search.repo.loaded_queries and suggest.repo.suggester_of.
class ModelQueries(Protocol):
    """The loaded model's search SQL (search.repo.VectorQueries)."""

    model_key: str


class QueryRecorder(Protocol):
    """Searches shoppers ran, recorded off the request path (suggest.repo.QueryLog)."""

    def record(self, query: str, client: str) -> None: ...

    async def run(self, stop: asyncio.Event) -> None: ...


class SearchLogWriter(Protocol):
    """The search log's writer, run from start-up to shutdown (analytics.log.SearchLog)."""

    async def run(self, stop: asyncio.Event) -> None: ...


class SuggestionSource(Protocol):
    """Suggestions while a shopper types (suggest.repo.Suggester)."""

    def forget(self) -> None:
        """Drop what it has cached about the catalog, after a change to it."""


@dataclass
class Readiness:
    """What /readyz reports, in one place: the model (loaded after start-up) and the database."""

    # Set once the model is loaded and its vector width known.
    queries: ModelQueries | None = None
    model_failed: bool = False
    # The served key was retired before this process started: it never serves it again.
    model_retired: bool = False
    # Whether requests are failing for want of the database (and since when).
    database: DatabaseOutage = field(default_factory=DatabaseOutage)

    @property
    def model_ready(self) -> bool:
        return self.queries is not None


@dataclass
class Services:
    """Everything a feature may use, complete from the moment it is built (runtime.open_services)."""

    settings: Settings
    # The primary: writes, and reads that must see the caller's own write.
    pool: asyncpg.Pool
    # Searches, suggestions, facets and listings: a read replica when configured and current.
    reads: ReadPools
    cache: Cache
    storage: Storage
    embedder: Embedder
    model_key: str
    # Searches shoppers ran, recorded off the request path; suggestions read them back.
    query_log: QueryRecorder
    suggester: SuggestionSource
    # Every search, for the console's Demand page, written off the request path (webapp/analytics).
    search_log: SearchLogWriter
    readiness: Readiness = field(default_factory=Readiness)

    @property
    def queries(self) -> ModelQueries | None:
        """The vector queries for the loaded model; None while it is still loading."""
        return self.readiness.queries

    # Every decode of a photo a request sent, and the memory they may hold together.
    photos: PhotoDecoder = field(init=False)
    decode_budget: DecodeBudget = field(init=False)

    def __post_init__(self) -> None:
        self.photos = PhotoDecoder(self.settings.limits, self.settings.storage.max_image_bytes)
        self.decode_budget = self.photos.budget


def services() -> Services:
    """The current app's services (kept on the app, never on ``g``, which resets)."""
    found: Services = current_app.extensions["prethrift"]
    return found
