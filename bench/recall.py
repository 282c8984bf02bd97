"""Recall@10 of the app's vector SQL against exact search in numpy, and its index time."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import numpy as np

from bench.catalog import CatalogSpec, cluster_centres, noisy, read_vectors
from bench.load import percentiles
from webapp.adapters.db import create_pool
from webapp.catalog.filters import SearchFilters, filter_sql
from webapp.config import DatabaseSettings
from webapp.search.repo import VectorQueries


def exact_top(matrix: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    """The ids of the ``k`` rows closest to ``query`` by cosine (rows and query are unit vectors)."""
    if len(ids) <= k:
        return {int(i) for i in ids}
    similarity = matrix @ query
    top = np.argpartition(-similarity, k)[:k]
    return {int(i) for i in ids[top]}


# Query vectors per filter (twelve filters: the first this many of the unfiltered set).
FILTERED_QUERIES = 100
# Filters a shopper sets, from 1% to about 30% of the catalog: categories (which follow the
# vector clusters), a colour and price ranges (which do not), and combinations.
FILTERS: list[tuple[str, SearchFilters]] = [
    ("category=jumpsuits", SearchFilters(category="jumpsuits")),
    ("category=bags", SearchFilters(category="bags")),
    ("category=dresses", SearchFilters(category="dresses")),
    ("category=tops", SearchFilters(category="tops")),
    ("colour=grey", SearchFilters(colour="grey")),
    ("price <= $5", SearchFilters(price_max=Decimal(5))),
    ("price <= $10", SearchFilters(price_max=Decimal(10))),
    ("price $20-$35", SearchFilters(price_min=Decimal(20), price_max=Decimal(35))),
    ("category=dresses, price <= $40", SearchFilters(category="dresses", price_max=Decimal(40))),
    ("category=jeans, colour=blue", SearchFilters(category="jeans", colour="blue")),
    ("colour=black, condition=good", SearchFilters(colour="black", condition="good")),
    (
        "category=tops, price $20-$35",
        SearchFilters(category="tops", price_min=Decimal(20), price_max=Decimal(35)),
    ),
]


async def measure(
    dsn: str, spec: CatalogSpec, model_key: str, *, queries: int, ef_search: int | None = None
) -> dict[str, Any]:
    """Run the app's nearest() for query vectors drawn like the catalog, against exact top-10."""
    k = 10
    pool = await create_pool(dsn, min_size=1, max_size=1, **({"ef_search": ef_search} if ef_search else {}))
    try:
        async with pool.acquire() as connection:
            ids, matrix, _ = await read_vectors(connection, model_key)
            ef = await connection.fetchval("SHOW hnsw.ef_search")
            iterative = await connection.fetchval("SHOW hnsw.iterative_scan")
            rng = np.random.default_rng([spec.seed, 3])
            centres = cluster_centres(spec)
            vectors = noisy(centres[rng.integers(0, spec.clusters, queries)], spec.noise, rng)
            repo = VectorQueries(model_key, spec.dim, DatabaseSettings())

            report: dict[str, Any] = {
                "queries": queries,
                "catalog_vectors": len(ids),
                "hnsw.ef_search": ef,
                "hnsw.iterative_scan": iterative,
            }
            for vector in vectors[: min(20, queries)]:  # warm caches; not measured
                await repo.nearest(connection, vector, limit=k, offset=0)
            report["unfiltered"] = await _run(connection, repo, vectors, matrix, ids, None, k)

            # The app's own plan choices: per-category and per-colour partial indexes where they exist.
            report["graphs"] = sorted(
                f"{column}={value}" for column, value in await repo.graphs.load(connection)
            )
            report["filtered"] = []
            for label, filters in FILTERS:
                params: list[Any] = []
                where = filter_sql(filters, params)
                passing = await connection.fetch(f"SELECT i.id FROM items i WHERE {where}", *params)
                mask = np.isin(ids, np.fromiter((r["id"] for r in passing), dtype=ids.dtype))
                await repo.nearest(connection, vectors[0], limit=k, offset=0, filters=filters)  # plan choice
                few = vectors[:FILTERED_QUERIES]
                result = await _run(connection, repo, few, matrix[mask], ids[mask], filters, k)
                result["filter"] = label
                result["selectivity"] = round(float(mask.mean()), 4)
                report["filtered"].append(result)
    finally:
        await pool.close()
    return report


async def _run(
    connection: Any,
    repo: VectorQueries,
    vectors: np.ndarray,
    matrix: np.ndarray,
    ids: np.ndarray,
    filters: SearchFilters | None,
    k: int,
) -> dict[str, Any]:
    recalls: list[float] = []
    times: list[float] = []
    short_pages = 0
    kwargs: dict[str, Any] = {"filters": filters} if filters is not None else {}
    for vector in vectors:
        started = time.perf_counter()
        hits = await repo.nearest(connection, vector, limit=k, offset=0, **kwargs)
        times.append(time.perf_counter() - started)
        found = {hit.id for hit in hits}
        exact = exact_top(matrix, ids, vector, k)
        recalls.append(len(found & exact) / len(exact) if exact else 1.0)
        short_pages += len(hits) < min(k, len(ids))
    return {
        "recall_at_10": round(float(np.mean(recalls)), 4),
        "recall_at_10_min": round(float(np.min(recalls)), 2),
        "short_pages": short_pages,
        **percentiles(times),
    }
