"""The HNSW graphs vector search runs on, and which one a filtered query uses.

Every model has a main graph over all its vectors (``ensure_vector_index``). Category and colour
values with enough items, and the items at or under a price ceiling, also get a partial graph of
their own (``PartialGraphs``): a filter on such a value then searches a graph of those items alone
(recall as unfiltered) instead of filtering a graph whose neighbourhoods are mostly other items.
A filtered query's plan (``PartialGraphs.plan``) is an exact scan when few items pass, else the
smallest graph holding every match, with a beam widened by the share of that graph it passes.
The tuning behind those choices is all in settings (webapp.config.DatabaseSettings).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import structlog
from cachetools import TTLCache

from webapp.adapters.db import INDEX_OPCLASS, sql_literal, vector_index_name
from webapp.catalog.filters import SearchFilters, filter_sql
from webapp.config import DatabaseSettings

log = structlog.get_logger(__name__)

# Filter columns copied onto item_embeddings (migrations 0006 and 0008) whose values get a
# partial HNSW graph of their own once they hold this many items, with the letter that marks
# their index names. Category follows the vector clusters and colour cuts across them: both are
# filters shoppers set (and type: "black dress") on most searches.
GRAPH_COLUMNS = {"category": "c", "colour": "h"}
GRAPH_MIN_ROWS = 500
# A price ceiling with a graph of the items at or under it (migration 0009 copies the price onto
# item_embeddings): price does not follow the vector clusters either, and bargain filters ("under
# $10") pass few items, which the main graph finds only with a wide beam. A price_max at or under
# the ceiling searches it. One ceiling, not several: the planner may use any partial index whose
# predicate the query implies, and "price <= 10" implies "price <= 20", so with nested ceilings it
# could search the larger graph with a beam sized for the smaller one. It is built only while it
# holds at most GRAPH_MAX_SHARE of the catalog; wider price filters do well on the main graph
# (the bench's recall_by_filter, price ranges).
PRICE_CEILING = Decimal(10)
GRAPH_MAX_SHARE = 0.5
_GRAPH_LETTERS = {**GRAPH_COLUMNS, "price": "p"}
# Counting the rows a filter passes stops here (enough to estimate its share of the catalog).
COUNT_CAP = 50_000
# How long the plan choice for one filter combination (its matching-row count) is reused.
# Either plan returns a full, correctly ordered page; the count only picks the faster one, so a
# count some minutes old costs at most speed, and counting again costs a pass over the rows.
PLAN_CACHE_TTL_S = 300.0
# Photos per item assumed before the catalog is counted (as many as search ever ranks per item).
PHOTOS_PER_ITEM_UNKNOWN = 3
# Advisory lock held while building the per-value graphs, so instances do not race.
_GRAPH_INDEX_LOCK = 0x70726574_63617478


async def ensure_vector_index(
    connection: asyncpg.Connection, model_key: str, dim: int, *, m: int, ef_construction: int
) -> str:
    """Create the HNSW cosine index that serves ``model_key`` if it is missing, with these build
    options (webapp.config.DatabaseSettings says why they are what they are)."""
    name = vector_index_name(model_key)
    if await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
        return name
    # API and worker tasks start together and each ensures the index: without the lock, two
    # CREATE INDEX IF NOT EXISTS race and the loser fails on pg_class's unique name.
    # The lock makes the others wait for the one that builds; they then find it, or (their
    # catalog view not yet refreshed) are told it exists.
    try:
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(hashtext($1))", name)
            if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                log.info("building vector index", index=name, model_key=model_key, dim=dim, m=m)
                await connection.execute(
                    f"CREATE INDEX IF NOT EXISTS {name} ON item_embeddings "
                    f"USING hnsw ((embedding::halfvec({int(dim)})) {INDEX_OPCLASS}) "
                    f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
                    f"WHERE model_key = {sql_literal(model_key)}"
                )
    except (asyncpg.DuplicateTableError, asyncpg.UniqueViolationError):
        log.info("vector index built by another process", index=name)
    return name


def graph_predicate(column: str, value: str) -> str:
    """The partial graph's condition on item_embeddings, written the same in the index and the query
    so that the planner can prove the index applies (a literal: a $n parameter hides it)."""
    if column == "price":
        return f"price <= {Decimal(value)}"
    return f"{column} = {sql_literal(value)}"


@dataclass(frozen=True)
class Plan:
    """How one filtered vector query runs: an exact scan, or an HNSW beam over a graph (the main
    one when ``graph`` is None)."""

    exact: bool = False
    graph: tuple[str, str] | None = None  # (column, value): search this value's partial index
    ef_search: int = 0


class PartialGraphs:
    """One model's per-value graphs: which exist, building the missing ones, and plan choice."""

    def __init__(self, model_key: str, dim: int, settings: DatabaseSettings) -> None:
        self.model_key = model_key
        self.dim = dim
        self.settings = settings
        self._model = sql_literal(model_key)
        # (column, lower-cased value) -> items, for the values with a partial HNSW graph.
        self.sizes: dict[tuple[str, str], int] = {}
        self._total_rows = 0
        # Photos ranked per item of a page (webapp.search.repo.VectorQueries.nearest): the
        # catalog's photos per item with a tenth to spare, counted with the graphs' sizes.
        self.photos_per_item = float(PHOTOS_PER_ITEM_UNKNOWN)
        self._matching: TTLCache[tuple[object, ...], int] = TTLCache(maxsize=4096, ttl=PLAN_CACHE_TTL_S)

    def index_name(self, column: str, value: str) -> str:
        digest = hashlib.sha1(value.encode()).hexdigest()[:8]
        return f"{vector_index_name(self.model_key)}_{_GRAPH_LETTERS[column]}{digest}"

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(value for column, value in self.sizes if column == "category")

    async def ensure(self, connection: asyncpg.Connection) -> dict[tuple[str, str], int]:
        """Build a partial HNSW index for every value worth one; returns the values with one.

        Each is built with the main graph's options: a value's graph is searched as the main one
        is, and with pgvector's defaults the small ones lost recall at a million items
        (bench/README.md, hnsw_params).
        """
        await connection.execute("SELECT pg_advisory_lock($1)", _GRAPH_INDEX_LOCK)
        try:
            sizes = await self._count(connection)
            for column, value in self._worth_building(sizes):
                name = self.index_name(column, value)
                if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                    await connection.execute(
                        f"CREATE INDEX IF NOT EXISTS {name} ON item_embeddings "
                        f"USING hnsw ((embedding::halfvec({int(self.dim)})) {INDEX_OPCLASS}) "
                        f"WITH (m = {int(self.settings.hnsw_m)}, "
                        f"ef_construction = {int(self.settings.hnsw_ef_construction)}) "
                        f"WHERE model_key = {self._model} AND {graph_predicate(column, value)}"
                    )
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _GRAPH_INDEX_LOCK)
        return await self.load(connection, sizes)

    async def _count(self, connection: asyncpg.Connection) -> dict[tuple[str, str], int]:
        """Items under every category and colour, and at or under the price ceiling."""
        sizes: dict[tuple[str, str], int] = {}
        for column in GRAPH_COLUMNS:
            # An item's photos share its category and colour, so per-value distinct items add up.
            rows = await connection.fetch(
                f"""SELECT {column} AS value, count(*) AS n, count(DISTINCT item_id) AS items
                    FROM item_embeddings WHERE model_key = {self._model} GROUP BY {column}"""
            )
            self._total_rows = sum(row["n"] for row in rows)
            items = sum(row["items"] for row in rows)
            if items:
                self.photos_per_item = max(1.0, 1.1 * self._total_rows / items)
            sizes.update({(column, row["value"]): row["n"] for row in rows if row["value"] is not None})
        sizes[("price", str(PRICE_CEILING))] = await connection.fetchval(
            f"SELECT count(*) FROM item_embeddings WHERE model_key = {self._model} AND price <= {PRICE_CEILING}"
        )
        return sizes

    def _worth_building(self, sizes: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
        least = min(GRAPH_MIN_ROWS, self.settings.exact_scan_max_rows + 1)
        return [
            (column, value)
            for (column, value), n in sizes.items()
            if n >= least and (column != "price" or n <= GRAPH_MAX_SHARE * self._total_rows)
        ]

    async def load(
        self, connection: asyncpg.Connection, sizes: dict[tuple[str, str], int] | None = None
    ) -> dict[tuple[str, str], int]:
        """Learn which values have a partial graph (built here or by another instance), and sizes
        (counted here unless the caller just counted them)."""
        existing = {
            row["relname"]
            for row in await connection.fetch(
                "SELECT relname FROM pg_class WHERE relkind = 'i' AND starts_with(relname, $1)",
                vector_index_name(self.model_key) + "_",
            )
        }
        self.sizes = {
            key: n
            for key, n in (sizes if sizes is not None else await self._count(connection)).items()
            if self.index_name(*key) in existing
        }
        return self.sizes

    async def plan(self, connection: asyncpg.Connection, filters: SearchFilters, depth: int) -> Plan:
        """Exact scan for few rows; else the smallest graph holding every match, beam by share.

        A filter passing a share s of the graph it searches gets a beam of
        filtered_ef_per_result x depth / s, within the filtered beam settings.
        """
        tuning = self.settings
        matching = await self.count_matching(connection, filters)
        graphs = [
            ((column, value.lower()), self.sizes[(column, value.lower())])
            for column in GRAPH_COLUMNS
            if (value := getattr(filters, column)) is not None and (column, value.lower()) in self.sizes
        ]
        ceiling = ("price", str(PRICE_CEILING))
        if filters.price_max is not None and filters.price_max <= PRICE_CEILING and ceiling in self.sizes:
            graphs.append((ceiling, self.sizes[ceiling]))
        graph, searched = min(graphs, key=lambda g: g[1]) if graphs else (None, max(self._total_rows, matching))
        share = min(1.0, matching / max(searched, 1))
        if matching <= tuning.exact_scan_max_rows and (graph is None or share < tuning.graph_min_share):
            return Plan(exact=True)
        beam = math.ceil(tuning.filtered_ef_per_result * depth / share)
        return Plan(
            graph=graph,
            ef_search=max(tuning.filtered_ef_search, min(tuning.filtered_ef_search_max, beam)),
        )

    async def count_matching(self, connection: asyncpg.Connection, filters: SearchFilters) -> int:
        """Items passing the filters, counted up to COUNT_CAP; reused for PLAN_CACHE_TTL_S."""
        key = filters.cache_key()
        known = self._matching.get(key)
        if known is not None:
            return known
        params: list[Any] = []
        where = filter_sql(filters, params)
        params.append(COUNT_CAP)
        matching: int = await connection.fetchval(
            f"SELECT count(*) FROM (SELECT 1 FROM items i WHERE {where} LIMIT ${len(params)}) s", *params
        )
        self._matching[key] = matching
        return matching
