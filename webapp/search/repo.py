"""Catalog queries for search, for one model: vector, keyword, filtered browsing."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import numpy as np

from webapp.adapters.db import index_distance, sql_literal
from webapp.catalog.filters import SearchFilters, Sort, filter_sql
from webapp.config import DatabaseSettings
from webapp.search.graphs import PartialGraphs, Plan, graph_predicate
from webapp.services import Services

if TYPE_CHECKING:  # forgive.py runs its rounds through these queries
    from webapp.search.forgive import WordGroup

# Photos ranked per item of a page before folding them into items, at most: items have a few
# photos each, and a query near one of them is usually near its others. The catalog's own
# photos-per-item ratio sets it below that (PartialGraphs.photos_per_item: a catalog of one
# photo an item ranks a third as many). When that is too few the fold grows fourfold, up to
# MAX_FOLD photos per item (beyond the most photos an item may have).
PHOTOS_PER_ITEM = 3
MAX_FOLD = 128


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


_ORDER = {
    Sort.NEWEST: "i.created_at DESC, i.id DESC",
    Sort.PRICE_ASC: "i.price ASC, i.id ASC",
    Sort.PRICE_DESC: "i.price DESC, i.id DESC",
    Sort.RELEVANCE: "i.created_at DESC, i.id DESC",  # browsing has no query: newest first
}


_EXACT_SETTINGS = ("enable_hashjoin", "enable_mergejoin", "enable_seqscan")
# An index scan hands over candidates nearest first; each is checked against the item's row by
# primary key. Left a choice, the planner misjudges combined filters (two facet equalities
# estimated at a couple of rows when a thousand match) and materialises every matching item
# first, many times slower on the benchmark catalog (bench/README.md, recall by filter).
_INDEX_SETTINGS = (
    "enable_seqscan", "enable_bitmapscan", "enable_sort",
    "enable_hashjoin", "enable_mergejoin", "enable_material",
)  # fmt: skip


def _hit(row: asyncpg.Record, **extra: Any) -> Hit:
    data = {k: row[k] for k in Hit.__dataclass_fields__ if k in row.keys()}
    data.update(extra)
    return Hit(**data)


class VectorQueries:
    """SQL for one model, built once.

    The model key is written into the SQL as a literal, not a parameter: the planner can only
    use a partial index when it can prove the predicate, which a generic plan's $n hides.
    """

    def __init__(self, model_key: str, dim: int, settings: DatabaseSettings) -> None:
        self.model_key = model_key
        self.dim = dim
        self.graphs = PartialGraphs(model_key, dim, settings)
        self._index_distance = index_distance(dim)
        self._model = sql_literal(model_key)
        self._vector = f"SELECT embedding FROM item_embeddings WHERE item_id = $1 AND model_key = {self._model}"

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
        ranked = math.ceil(depth * min(PHOTOS_PER_ITEM, self.graphs.photos_per_item))
        params.append(ranked)
        candidates = len(params)
        plan = Plan()
        if filters is not None and filters.active:
            # The beam is sized for the most photos a page may rank, whatever the catalog's
            # ratio: a narrower one cost recall under narrow filters (bench/README.md, where_time_goes).
            plan = await self.graphs.plan(connection, filters, depth * PHOTOS_PER_ITEM)
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
                # One search, one core: parallel workers would take cores from the other searches.
                settings.append("SET LOCAL max_parallel_workers_per_gather = 0")
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

    async def keyword_ids(self, connection: asyncpg.Connection, text: str, *, limit: int) -> list[int]:
        """Up to ``limit`` searchable items holding every word, as the index gives them (unranked)."""
        rows = await connection.fetch(
            """SELECT i.id FROM items i,
                      (SELECT websearch_to_tsquery('simple', $1) || websearch_to_tsquery('english', $1) AS q) t
               WHERE i.search_tsv @@ t.q AND i.status = 'ready'
               LIMIT $2""",
            text,
            limit,
        )
        return [r["id"] for r in rows]

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
