"""Recall@10 of the app's vector SQL against exact search in numpy, and its index time."""

from __future__ import annotations

import inspect
import time
from typing import Any

import numpy as np

from bench.catalog import FILTER_1, FILTER_10, CatalogSpec, cluster_centres, noisy, read_vectors
from bench.load import percentiles
from webapp.db import create_pool
from webapp.search.filters import SearchFilters
from webapp.search.repo import VectorQueries


def exact_top(matrix: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> set[int]:
    """The ids of the ``k`` rows closest to ``query`` by cosine (rows and query are unit vectors)."""
    if len(ids) <= k:
        return {int(i) for i in ids}
    similarity = matrix @ query
    top = np.argpartition(-similarity, k)[:k]
    return {int(i) for i in ids[top]}


def supports_filters() -> bool:
    return "filters" in inspect.signature(VectorQueries.nearest).parameters


async def measure(
    dsn: str, spec: CatalogSpec, model_key: str, *, queries: int, ef_search: int | None = None
) -> dict[str, Any]:
    """Run the app's nearest() for query vectors drawn like the catalog, against exact top-10."""
    k = 10
    pool = await create_pool(dsn, min_size=1, max_size=1, **({"ef_search": ef_search} if ef_search else {}))
    try:
        async with pool.acquire() as connection:
            ids, matrix, categories = await read_vectors(connection, model_key)
            ef = await connection.fetchval("SHOW hnsw.ef_search")
            iterative = await connection.fetchval("SHOW hnsw.iterative_scan")
            rng = np.random.default_rng([spec.seed, 3])
            centres = cluster_centres(spec)
            vectors = noisy(centres[rng.integers(0, spec.clusters, queries)], spec.noise, rng)
            repo = VectorQueries(model_key, spec.dim)

            report: dict[str, Any] = {
                "queries": queries,
                "catalog_vectors": len(ids),
                "hnsw.ef_search": ef,
                "hnsw.iterative_scan": iterative,
            }
            for vector in vectors[: min(20, queries)]:  # warm caches; not measured
                await repo.nearest(connection, vector, limit=k, offset=0)
            report["unfiltered"] = await _run(connection, repo, vectors, matrix, ids, None, k)

            if not supports_filters():
                report["filtered"] = "filtered search not available yet (VectorQueries.nearest has no filters)"
                return report
            cats = np.asarray(categories)
            for label, value in (("filtered_10pct", FILTER_10), ("filtered_1pct", FILTER_1)):
                mask = cats == value
                result = await _run(
                    connection, repo, vectors, matrix[mask], ids[mask], SearchFilters(category=value), k
                )
                result["filter"] = f"category={value}"
                result["selectivity"] = round(float(mask.mean()), 4)
                report[label] = result
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
