"""The long-lived clients one process holds, opened at start-up and passed to features."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg
from quart import current_app

from webapp.cache import Cache
from webapp.config import Settings
from webapp.embedder import Embedder
from webapp.images import DecodeBudget
from webapp.search.repo import VectorQueries
from webapp.storage import Storage
from webapp.suggest.repo import QueryLog, Suggester


@dataclass
class Services:
    settings: Settings
    pool: asyncpg.Pool
    cache: Cache
    storage: Storage
    embedder: Embedder
    model_key: str
    # Set once the model is loaded and its vector width known.
    queries: VectorQueries | None = None
    # Searches shoppers ran, for suggestions; set while serving.
    query_log: QueryLog | None = None
    suggester: Suggester | None = None
    # Memory that concurrent image decodes may hold together.
    decode_budget: DecodeBudget = field(init=False)

    def __post_init__(self) -> None:
        limits = self.settings.limits
        self.decode_budget = DecodeBudget(limits.decode_budget_mb * 2**20, limits.decode_wait_s)


def services() -> Services:
    """The current app's services (kept on the app, never on ``g``, which resets)."""
    found: Services = current_app.extensions["prethrift"]
    return found
