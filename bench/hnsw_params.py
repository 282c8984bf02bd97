"""Recall@10 and query time of the main HNSW graph by its build parameters and ef_search.

    .venv/bin/python -m bench.hnsw_params --items 1000000 --m 24 --ef-construction 128

Loads the benchmark catalog (bench.catalog, same seed and clusters as bench.search_bench) into a
database of its own, `bench_<items>_m<m>_efc<ef_construction>` (kept and reused), builds the
app's main index there with the given pgvector build options (pgvector's defaults are m 16,
ef_construction 64), then runs the app's unfiltered `nearest()` for query vectors drawn like the
catalog at each ef_search and compares with the exact top 10 in numpy. Prints one line per
ef_search; build time and index size first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import asyncpg
import numpy as np
from pgvector.asyncpg import register_vector

from bench import catalog
from bench.recall import _run
from bench.search_bench import MODEL
from bench.services import DATA, POSTGRES_SETTINGS
from webapp.adapters.db import (
    INDEX_OPCLASS,
    EmbeddedPostgres,
    create_pool,
    migrate,
    sql_literal,
    vector_index_name,
)
from webapp.config import DatabaseSettings
from webapp.search.repo import VectorQueries


async def measure(items: int, m: int, ef_construction: int, ef_searches: list[int], queries: int) -> None:
    spec = catalog.CatalogSpec(items=items, seed=20260101)
    model_key = f"{MODEL}/random-seed0"
    postgres = EmbeddedPostgres(
        DATA / "postgres", database=f"bench_{items}_m{m}_efc{ef_construction}", settings=POSTGRES_SETTINGS
    )
    dsn = postgres.start()
    try:
        connection = await asyncpg.connect(dsn)
        try:
            await migrate(connection)
            await register_vector(connection)
            name = vector_index_name(model_key)
            if not await connection.fetchval("SELECT to_regclass($1) IS NOT NULL", name):
                await catalog._load(connection, spec, model_key, {}, print)
                await connection.execute(f"SET maintenance_work_mem = '{max(1024, items * 2560 // 2**20)}MB'")
                started = time.perf_counter()
                await connection.execute(
                    f"CREATE INDEX {name} ON item_embeddings "
                    f"USING hnsw ((embedding::halfvec({spec.dim})) {INDEX_OPCLASS}) "
                    f"WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
                    f"WHERE model_key = {sql_literal(model_key)}"
                )
                built_s = time.perf_counter() - started
                print(f"built m {m}, ef_construction {ef_construction} in {built_s:.0f} s")
                await connection.execute("ANALYZE item_embeddings")
            size = await connection.fetchval("SELECT pg_relation_size($1::regclass)", name)
            print(f"index {size / 2**20:,.0f} MiB, {size / items:,.0f} B/item", flush=True)
        finally:
            await connection.close()
        rng = np.random.default_rng([spec.seed, 3])  # the same query vectors as bench.recall
        centres = catalog.cluster_centres(spec)
        vectors = catalog.noisy(centres[rng.integers(0, spec.clusters, queries)], spec.noise, rng)
        pool = await create_pool(dsn, min_size=1, max_size=1)
        try:
            async with pool.acquire() as connection:
                ids, matrix, _ = await catalog.read_vectors(connection, model_key)
        finally:
            await pool.close()
        for ef in ef_searches:
            pool = await create_pool(dsn, min_size=1, max_size=1, ef_search=ef)
            try:
                async with pool.acquire() as connection:
                    repo = VectorQueries(model_key, spec.dim, DatabaseSettings())
                    for vector in vectors[:20]:  # warm
                        await repo.nearest(connection, vector, limit=10)
                    result = await _run(connection, repo, vectors, matrix, ids, None, 10)
            finally:
                await pool.close()
            print(
                f"ef_search {ef:4}: recall@10 {result['recall_at_10']:.3f} (min {result['recall_at_10_min']}), "
                f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms",
                flush=True,
            )
    finally:
        postgres.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef-search", type=int, nargs="+", default=[60, 120, 240, 400])
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args(argv)
    asyncio.run(measure(args.items, args.m, args.ef_construction, args.ef_search, args.queries))
    return 0


if __name__ == "__main__":
    sys.exit(main())
