"""Catalog queries for search, for one model: vector, keyword, filtered browsing."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import numpy as np
from cachetools import TTLCache

from webapp.adapters.db import INDEX_OPCLASS, index_distance, sql_literal, vector_index_name
from webapp.catalog.filters import SearchFilters, Sort
from webapp.catalog.sizes import accepted_keys
from webapp.config import DatabaseSettings
from webapp.services import Services

if TYPE_CHECKING:  # forgive.py runs its rounds through these queries
    from webapp.search.forgive import WordGroup

# The exact-scan limit and the smallest filtered beam are settings (webapp.config, where their
# reasons are); these are their defaults. A filter passing a share s of the graph it searches
# gets a beam of EF_PER_RESULT x (offset + limit) / s, at least the smallest and at most
# MAX_EF_SEARCH (bench/README.md: recall by filter).
EXACT_SCAN_MAX_ROWS: int = DatabaseSettings.model_fields["exact_scan_max_rows"].default
FILTERED_EF_SEARCH: int = DatabaseSettings.model_fields["filtered_ef_search"].default
EF_PER_RESULT = 8
MAX_EF_SEARCH = 1000
# Few matches that are under this share of the smallest graph holding them are scanned exactly:
# the graph's scan would walk ~1/share candidates per result (bench/README.md, colour graphs:
# cream + carhartt, 61 matches, 1.5% of cream, exact 6 ms, graph 16 ms; white + nike, 477 at 4%,
# 13 against 30 ms; cream + zara, 1,079 at 27%, graph 9 ms against exact 46 ms).
GRAPH_MIN_SHARE = 0.1
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
# (bench/README.md: price $20-$35, 27% of the catalog, 7 ms).
PRICE_CEILING = Decimal(10)
GRAPH_MAX_SHARE = 0.5
_GRAPH_LETTERS = {**GRAPH_COLUMNS, "price": "p"}
# Photos ranked per item of a page before folding them into items: items have a few photos each,
# and a query near one of them is usually near its others. When that is too few the fold grows
# fourfold, up to MAX_FOLD photos per item (beyond the most photos an item may have).
PHOTOS_PER_ITEM = 3
MAX_FOLD = 128
# Counting the rows a filter passes stops here (enough to estimate its share of the catalog).
COUNT_CAP = 50_000
# How long the plan choice for one filter combination (its matching-row count) is reused.
# Either plan returns a full, correctly ordered page; the count only picks the faster one.
PLAN_CACHE_TTL_S = 30.0
# Advisory lock held while building the per-value graphs, so instances do not race.
_GRAPH_INDEX_LOCK = 0x70726574_63617478


@dataclass(frozen=True)
class Hit:
    id: int
    title: str
    brand: str | None
    category: str | None
    size: str | None
    colour: str | None
    condition: str | None
    price: Decimal
    currency: str
    image_key: str
    created_at: dt.datetime
    score: float | None = None  # cosine similarity to the query, when there is a query vector
    relevance: float | None = None  # the ranking score (RRF in hybrid mode)

    def to_json(self) -> dict[str, Any]:
        # By hand rather than dataclasses.asdict, which deep-copies every field (hot path).
        data = dict(self.__dict__)
        data["price"] = str(self.price)
        data["created_at"] = self.created_at.isoformat()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Hit:
        return cls(
            **{
                **data,
                "price": Decimal(data["price"]),
                "created_at": dt.datetime.fromisoformat(data["created_at"]),
            }
        )


# Every stored field of a hit (the scores are computed per query).
_HIT_COLUMNS = ", ".join(f"i.{f.name}" for f in fields(Hit) if f.name not in ("score", "relevance"))


def filter_sql(filters: SearchFilters, params: list[Any], *, status: str = "i.status = 'ready'") -> str:
    """SQL conditions on ``items i`` for the active filters; appends their parameters.

    Search sees only ready items; the seller's listing passes its own ``status`` condition.
    """
    clauses = [status]
    if filters.size is not None:
        # However the shop wrote the size (migration 0013 stores its key beside it).
        params.append(accepted_keys(filters.size))
        clauses.append(f"i.size_key = ANY(${len(params)}::text[])")
    for column in ("category", "colour", "brand"):
        value = getattr(filters, column)
        if value is not None:
            params.append(value.lower())
            clauses.append(f"lower(i.{column}) = ${len(params)}")
    if filters.condition is not None:
        params.append(filters.condition)
        clauses.append(f"i.condition = ${len(params)}")
    if filters.price_min is not None:
        params.append(filters.price_min)
        clauses.append(f"i.price >= ${len(params)}")
    if filters.price_max is not None:
        params.append(filters.price_max)
        clauses.append(f"i.price <= ${len(params)}")
    return " AND ".join(clauses)


_ORDER = {
    Sort.NEWEST: "i.created_at DESC, i.id DESC",
    Sort.PRICE_ASC: "i.price ASC, i.id ASC",
    Sort.PRICE_DESC: "i.price DESC, i.id DESC",
    Sort.RELEVANCE: "i.created_at DESC, i.id DESC",  # browsing has no query: newest first
}


@dataclass(frozen=True)
class _Plan:
    """How one filtered vector query runs."""

    exact: bool = False
    graph: tuple[str, str] | None = None  # (column, value): search this value's partial index
    ef_search: int = FILTERED_EF_SEARCH


_EXACT_SETTINGS = ("enable_hashjoin", "enable_mergejoin", "enable_seqscan")
# An index scan hands over candidates nearest first; each is checked against the item's row by
# primary key. Left a choice, the planner misjudges combined filters (lower(brand) = 'zara' AND
# lower(colour) = 'cream' estimated at 2 rows, 1,079 real) and materialises every matching item
# first: 130 ms instead of 15 on the benchmark catalog.
_INDEX_SETTINGS = (
    "enable_seqscan", "enable_bitmapscan", "enable_sort",
    "enable_hashjoin", "enable_mergejoin", "enable_material",
)  # fmt: skip


def graph_predicate(column: str, value: str) -> str:
    """The partial graph's condition on item_embeddings, written the same in the index and the query
    so that the planner can prove the index applies (a literal: a $n parameter hides it)."""
    if column == "price":
        return f"price <= {Decimal(value)}"
    return f"{column} = {sql_literal(value)}"


def _hit(row: asyncpg.Record, **extra: Any) -> Hit:
    data = {k: row[k] for k in Hit.__dataclass_fields__ if k in row.keys()}
    data.update(extra)
    return Hit(**data)


class VectorQueries:
    """SQL for one model, built once.

    The model key is written into the SQL as a literal, not a parameter: the planner can only
    use a partial index when it can prove the predicate, which a generic plan's $n hides.
    """

    def __init__(
        self,
        model_key: str,
        dim: int,
        *,
        exact_scan_max_rows: int = EXACT_SCAN_MAX_ROWS,
        filtered_ef_search: int = FILTERED_EF_SEARCH,
    ) -> None:
        self.model_key = model_key
        self.dim = dim
        self.exact_scan_max_rows = exact_scan_max_rows
        self.filtered_ef_search = filtered_ef_search
        self._index_distance = index_distance(dim)
        self._model = sql_literal(model_key)
        self._vector = f"SELECT embedding FROM item_embeddings WHERE item_id = $1 AND model_key = {self._model}"
        # (column, lower-cased value) -> items, for the values with a partial HNSW graph.
        self.graphs: dict[tuple[str, str], int] = {}
        self._total_rows = 0
        self._matching: TTLCache[tuple[object, ...], int] = TTLCache(maxsize=4096, ttl=PLAN_CACHE_TTL_S)

    def graph_index_name(self, column: str, value: str) -> str:
        digest = hashlib.sha1(value.encode()).hexdigest()[:8]
        return f"{vector_index_name(self.model_key)}_{_GRAPH_LETTERS[column]}{digest}"

    @property
    def category_indexes(self) -> frozenset[str]:
        return frozenset(value for column, value in self.graphs if column == "category")

    async def ensure_graphs(self, connection: asyncpg.Connection) -> dict[tuple[str, str], int]:
        """Build a partial HNSW index for every category and colour with enough items; returns them.

        A filter on such a value then searches a graph of those items alone (recall as
        unfiltered) instead of filtering a graph whose neighbourhoods are mostly other items.
        """
        await connection.execute("SELECT pg_advisory_lock($1)", _GRAPH_INDEX_LOCK)
        try:
            sizes = await self._graph_sizes(connection)
            for column, value in self._graphs_worth_building(sizes):
                name = self.graph_index_name(column, value)
                if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                    await connection.execute(
                        f"CREATE INDEX IF NOT EXISTS {name} ON item_embeddings "
                        f"USING hnsw ((embedding::halfvec({int(self.dim)})) {INDEX_OPCLASS}) "
                        f"WHERE model_key = {self._model} AND {graph_predicate(column, value)}"
                    )
        finally:
            await connection.execute("SELECT pg_advisory_unlock($1)", _GRAPH_INDEX_LOCK)
        return await self.load_graphs(connection, sizes)

    async def _graph_sizes(self, connection: asyncpg.Connection) -> dict[tuple[str, str], int]:
        """Items under every category and colour, and at or under the price ceiling."""
        sizes: dict[tuple[str, str], int] = {}
        for column in GRAPH_COLUMNS:
            rows = await connection.fetch(
                f"""SELECT {column} AS value, count(*) AS n FROM item_embeddings
                    WHERE model_key = {self._model} GROUP BY {column}"""
            )
            self._total_rows = sum(row["n"] for row in rows)
            sizes.update({(column, row["value"]): row["n"] for row in rows if row["value"] is not None})
        sizes[("price", str(PRICE_CEILING))] = await connection.fetchval(
            f"SELECT count(*) FROM item_embeddings WHERE model_key = {self._model} AND price <= {PRICE_CEILING}"
        )
        return sizes

    def _graphs_worth_building(self, sizes: dict[tuple[str, str], int]) -> list[tuple[str, str]]:
        least = min(GRAPH_MIN_ROWS, self.exact_scan_max_rows + 1)
        return [
            (column, value)
            for (column, value), n in sizes.items()
            if n >= least and (column != "price" or n <= GRAPH_MAX_SHARE * self._total_rows)
        ]

    async def load_graphs(
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
        self.graphs = {
            key: n
            for key, n in (sizes if sizes is not None else await self._graph_sizes(connection)).items()
            if self.graph_index_name(*key) in existing
        }
        return self.graphs

    async def nearest(
        self,
        connection: asyncpg.Connection,
        vector: np.ndarray,
        *,
        limit: int,
        offset: int = 0,
        exclude_id: int = 0,
        filters: SearchFilters | None = None,
    ) -> list[Hit]:
        """The ``limit`` items closest to ``vector`` after ``offset``, best first.

        An item scores by its best-matching photo. The index ranks photos; the nearest of them
        are folded into items, and when they hold fewer items than the page reaches (one item's
        photos crowding the top) the fold runs again over more. Any item outside the photos
        folded is farther than all of them, so the page is exactly the items ranked
        ``offset`` to ``offset + limit`` by their best photo: none twice, none skipped.
        """
        depth = offset + limit
        params: list[Any] = [vector, limit, offset, exclude_id]
        where = filter_sql(filters or SearchFilters(), params)
        params.append(depth * PHOTOS_PER_ITEM)
        candidates = len(params)
        plan = _Plan()
        if filters is not None and filters.active:
            plan = await self._filtered_plan(connection, filters, depth * PHOTOS_PER_ITEM)
            if plan.graph is not None:
                # Named with a literal so that the planner can prove the partial index applies.
                where += f" AND e.{graph_predicate(*plan.graph)}"
        # The index serves only its own expression; the uncast column is the exact path.
        distance = "e.embedding <=> $1" if plan.exact else self._index_distance
        sql = f"""
            WITH photos AS MATERIALIZED (
                SELECT e.item_id, {distance} AS distance
                FROM item_embeddings e JOIN items i ON i.id = e.item_id
                WHERE e.model_key = {self._model} AND e.item_id <> $4 AND {where}
                ORDER BY {distance}
                LIMIT ${candidates}
            ), best AS (
                SELECT item_id, min(distance) AS distance FROM photos GROUP BY item_id
            )
            SELECT h.*, c.photos_seen, c.items_seen
            FROM (SELECT (SELECT count(*) FROM photos) AS photos_seen,
                         (SELECT count(*) FROM best) AS items_seen) c
            LEFT JOIN LATERAL (
                SELECT {_HIT_COLUMNS}, 1 - b.distance AS score
                FROM best b JOIN items i ON i.id = b.item_id
                ORDER BY b.distance, i.id
                LIMIT $2 OFFSET $3
            ) h ON true"""
        if filters is None or not filters.active:
            rows = await self._folded(connection, sql, params, candidates, depth)
        else:
            async with connection.transaction():
                # Left alone, the planner guesses: a full scan of every vector for mid-selectivity
                # filters, a hash join over all of item_embeddings for small ones. Both are slower
                # than the plan the filter's measured size calls for.
                # One round trip for all of them (a simple-protocol execute may hold several).
                settings = [
                    f"SET LOCAL {s} = off" for s in (_EXACT_SETTINGS if plan.exact else _INDEX_SETTINGS)
                ]
                if not plan.exact:
                    settings.append(f"SET LOCAL hnsw.ef_search = {int(plan.ef_search)}")
                await connection.execute("; ".join(settings))
                rows = await self._folded(connection, sql, params, candidates, depth)
        found = [r for r in rows if r["id"] is not None]  # an empty page still carries the counts
        return [_hit(r, score=float(r["score"]), relevance=float(r["score"])) for r in found]

    @staticmethod
    async def _folded(
        connection: asyncpg.Connection, sql: str, params: list[Any], candidates: int, depth: int
    ) -> list[asyncpg.Record]:
        """Run the fold over more photos until it holds ``depth`` items or every matching photo."""
        while True:
            rows: list[asyncpg.Record] = await connection.fetch(sql, *params)
            seen = rows[0]
            wanted = params[candidates - 1]
            if seen["items_seen"] >= depth or seen["photos_seen"] < wanted or wanted >= depth * MAX_FOLD:
                return rows
            params[candidates - 1] = wanted * 4

    async def _filtered_plan(self, connection: asyncpg.Connection, filters: SearchFilters, depth: int) -> _Plan:
        """Exact scan for few rows; else the smallest graph holding every match, beam by share."""
        matching = await self._count_matching(connection, filters)
        graphs = [
            ((column, value.lower()), self.graphs[(column, value.lower())])
            for column in GRAPH_COLUMNS
            if (value := getattr(filters, column)) is not None and (column, value.lower()) in self.graphs
        ]
        ceiling = ("price", str(PRICE_CEILING))
        if filters.price_max is not None and filters.price_max <= PRICE_CEILING and ceiling in self.graphs:
            graphs.append((ceiling, self.graphs[ceiling]))
        graph, searched = min(graphs, key=lambda g: g[1]) if graphs else (None, max(self._total_rows, matching))
        share = min(1.0, matching / max(searched, 1))
        if matching <= self.exact_scan_max_rows and (graph is None or share < GRAPH_MIN_SHARE):
            return _Plan(exact=True)
        beam = math.ceil(EF_PER_RESULT * depth / share)
        return _Plan(graph=graph, ef_search=max(self.filtered_ef_search, min(MAX_EF_SEARCH, beam)))

    async def _few_match(self, connection: asyncpg.Connection, filters: SearchFilters) -> bool:
        """Whether so few items pass the filters that scanning them exactly is cheapest."""
        return await self._count_matching(connection, filters) <= self.exact_scan_max_rows

    async def _count_matching(self, connection: asyncpg.Connection, filters: SearchFilters) -> int:
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

    async def keyword(
        self,
        connection: asyncpg.Connection,
        text: str,
        *,
        limit: int,
        filters: SearchFilters | None = None,
        prefix: bool = False,
    ) -> list[Hit]:
        """Full-text matches on brand, title and description, best first (exact words rank high)."""
        query = prefix_tsquery(text) if prefix else None
        if prefix and query is None:
            return []
        params: list[Any] = [query or text, limit]
        where = filter_sql(filters or SearchFilters(), params)
        tsquery = (
            "to_tsquery('simple', $1)"
            if prefix
            else "(websearch_to_tsquery('simple', $1) || websearch_to_tsquery('english', $1))"
        )
        rows = await connection.fetch(
            f"""SELECT {_HIT_COLUMNS}, ts_rank_cd(i.search_tsv, t.q, 32) AS rank
                FROM items i, (SELECT {tsquery} AS q) t
                WHERE i.search_tsv @@ t.q AND {where}
                ORDER BY rank DESC, i.id
                LIMIT $2""",
            *params,
        )
        return [_hit(r, relevance=float(r["rank"])) for r in rows]

    async def forgiving(
        self,
        connection: asyncpg.Connection,
        groups: list[WordGroup],
        *,
        limit: int,
        filters: SearchFilters | None = None,
        exclude: list[int] | None = None,
    ) -> list[Hit]:
        """Items matching every group (each through any of its alternatives), best first."""
        if not groups:
            return []
        params: list[Any] = [limit, exclude or []]
        where = filter_sql(filters or SearchFilters(), params)
        expressions = []
        for group in groups:
            alternatives = []
            for term in group.terms:
                params.append(term)
                if " " in term:
                    # Several words say one thing ("down jacket"): as a phrase, stopwords kept.
                    alternatives.append(f"phraseto_tsquery('simple', ${len(params)})")
                else:
                    n = len(params)
                    alternatives.append(f"plainto_tsquery('simple', ${n}) || plainto_tsquery('english', ${n})")
            if group.prefix:
                params.append(group.word + ":*")
                alternatives.append(f"to_tsquery('simple', ${len(params)})")
            expressions.append("(" + " || ".join(alternatives) + ")")
        every = " && ".join(expressions)
        rows = await connection.fetch(
            f"""SELECT {_HIT_COLUMNS}, ts_rank_cd(i.search_tsv, t.q, 32) AS rank
                FROM items i, (SELECT {every} AS q) t
                WHERE i.search_tsv @@ t.q AND NOT i.id = ANY($2::bigint[]) AND {where}
                ORDER BY rank DESC, i.id
                LIMIT $1""",
            *params,
        )
        return [_hit(r, relevance=float(r["rank"])) for r in rows]

    async def scores(
        self, connection: asyncpg.Connection, vector: np.ndarray, ids: list[int]
    ) -> dict[int, float]:
        """Cosine similarity of given items (their best photo) to the query (for keyword-only hits
        in hybrid)."""
        if not ids:
            return {}
        rows = await connection.fetch(
            f"""SELECT e.item_id, 1 - min({self._index_distance}) AS score FROM item_embeddings e
                WHERE e.model_key = {self._model} AND e.item_id = ANY($2::bigint[])
                GROUP BY e.item_id""",
            vector,
            ids,
        )
        return {r["item_id"]: float(r["score"]) for r in rows}

    async def browse(
        self,
        connection: asyncpg.Connection,
        *,
        filters: SearchFilters,
        sort: Sort,
        limit: int,
        offset: int,
    ) -> list[Hit]:
        """Filter-only listing, in a stable order (ties broken by id)."""
        params: list[Any] = [limit, offset]
        where = filter_sql(filters, params)
        rows = await connection.fetch(
            f"SELECT {_HIT_COLUMNS} FROM items i WHERE {where} ORDER BY {_ORDER[sort]} LIMIT $1 OFFSET $2",
            *params,
        )
        return [_hit(r) for r in rows]

    async def item_vector(self, connection: asyncpg.Connection, item_id: int) -> np.ndarray | None:
        """What "more like this" searches with: the normalised mean of the item's photos' vectors
        (the garment seen from every side it was photographed), None before any is embedded."""
        values = [r["embedding"] for r in await connection.fetch(self._vector, item_id)]
        if not values:
            return None
        vectors = np.stack(
            [np.asarray(v.to_numpy() if hasattr(v, "to_numpy") else v, dtype=np.float32) for v in values]
        )
        mean: np.ndarray = vectors.mean(axis=0)
        norm = float(np.linalg.norm(mean))
        return mean / norm if norm > 0 else vectors[0]


async def catalog_names(connection: asyncpg.Connection) -> tuple[list[str], list[str]]:
    """The distinct brands and colours of searchable items (for reading them in queries)."""
    return await _distinct(connection, "brand"), await _distinct(connection, "colour")


async def _distinct(connection: asyncpg.Connection, column: str) -> list[str]:
    # A loose index scan: one probe of the facet index per distinct value, not a pass over
    # every item (the PostgreSQL wiki's "Loose indexscan" recursive CTE).
    rows = await connection.fetch(
        f"""WITH RECURSIVE v AS (
                (SELECT lower({column}) AS k FROM items
                 WHERE status = 'ready' AND lower({column}) IS NOT NULL ORDER BY 1 LIMIT 1)
                UNION ALL
                SELECT (SELECT lower({column}) FROM items
                        WHERE status = 'ready' AND lower({column}) > v.k ORDER BY 1 LIMIT 1)
                FROM v WHERE v.k IS NOT NULL)
            SELECT (SELECT {column} FROM items WHERE status = 'ready' AND lower({column}) = v.k LIMIT 1) AS name
            FROM v WHERE v.k IS NOT NULL"""
    )
    return [r["name"] for r in rows if r["name"] is not None]


async def search_words(connection: asyncpg.Connection) -> dict[str, int]:
    """Every word the catalog has held, with how many items used it (for typos and soft AND)."""
    rows = await connection.fetch("SELECT word, items FROM search_words")
    return {r["word"]: r["items"] for r in rows}


def prefix_tsquery(text: str) -> str | None:
    """'faded den' -> 'faded & den:*': every word typed so far, the last one as a prefix."""
    words = ["".join(ch for ch in word if ch.isalnum()) for word in text.lower().split()]
    words = [w for w in words if w]
    if not words:
        return None
    return " & ".join(words[:-1] + [words[-1] + ":*"])


def loaded_queries(services: Services) -> VectorQueries | None:
    """The loaded model's search SQL, as search built it at start-up; None while it loads."""
    queries = services.queries
    if queries is None or isinstance(queries, VectorQueries):
        return queries
    raise TypeError(f"services hold {type(queries).__name__}, not search's VectorQueries")
