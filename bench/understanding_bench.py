"""What query understanding and facets cost on a 100k-item catalog.

    .venv/bin/python -m bench.understanding_bench              # 100,000 items (first run loads them)
    .venv/bin/python -m bench.understanding_bench --items 20000 --rounds 30   # a smoke run

The catalog is bench/catalog.py's (facets with realistic shares: "dresses" is ~10%), loaded
into a private PostgreSQL under bench/.data/understanding without vectors: everything measured
here is SQL and Python that runs beside the vector search, not the vector search itself. Each
figure is the median of ``--rounds`` runs over a fixed query set, next to the keyword search a
hybrid or keyword query always runs, measured in the same run, as the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import asyncpg

from bench import catalog
from bench.services import DATA
from webapp.adapters.db import EmbeddedPostgres, migrate
from webapp.catalog.filters import FACET_NAMES, SearchFilters
from webapp.config import DatabaseSettings
from webapp.search.facets import count_facets
from webapp.search.forgive import CANDIDATES, FORGIVE_BELOW, forgive, load_synonyms
from webapp.search.parse import ALIASES_FILE, Vocabulary, load_aliases, parse_query
from webapp.search.repo import VectorQueries, catalog_names, search_words

QUERIES = [
    "navy wool coat size M under $60",
    "levis jeans w32",
    "black midi dress under 40",
    "nike trainers eu 42",
    "vintage denim jacket",
    "cream cable knit sweater",
    "burgundy jumper like new",
    "patagonia fleece XL",
    "zara blazer between 20 and 50",
    "retro leather jacket over 80",
    "oversized shirt",
    "dr martens chelsea boots",
]
TYPOS = ["denim jaket", "cabel knit sweter", "wool jumper", "trainers boots", "chelsae boots", "leathr jackt"]


async def _load(dsn: str, items: int) -> dict[str, Any]:
    connection = await asyncpg.connect(dsn)
    try:
        await migrate(connection)
        have = await connection.fetchval("SELECT count(*) FROM items")
        if have == items:
            return {"loaded": False, "items": have}
        started = time.perf_counter()
        rows = catalog.generate(catalog.CatalogSpec(items=items, dim=8)).rows
        await connection.execute(
            "TRUNCATE items, item_photos, item_embeddings, embedding_jobs, search_words RESTART IDENTITY"
        )
        for start in range(0, len(rows), 20_000):
            await connection.copy_records_to_table(
                "items", records=rows[start : start + 20_000], columns=list(catalog.ITEM_COLUMNS)
            )
        # A settled catalog: the visibility map lets covering indexes answer without the heap.
        await connection.execute("VACUUM ANALYZE items")
        return {"loaded": True, "items": items, "load_s": round(time.perf_counter() - started, 1)}
    finally:
        await connection.close()


async def _median_ms(rounds: int, work: Callable[[], Awaitable[object]]) -> float:
    await work()  # warm
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def run(items: int, rounds: int) -> None:
    server = EmbeddedPostgres(DATA / "understanding")
    dsn = server.start()
    try:
        print(await _load(dsn, items))
        pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
        queries = VectorQueries("bench/none", 8, DatabaseSettings())
        async with pool.acquire() as connection:
            started = time.perf_counter()
            brands, colours = await catalog_names(connection)
            words = await search_words(connection)
            vocabulary_ms = (time.perf_counter() - started) * 1000
        vocabulary = Vocabulary.build(brands, colours, load_aliases(ALIASES_FILE))
        synonyms = load_synonyms()
        print(f"vocabulary: {len(brands)} brands, {len(colours)} colours, {len(words)} words, read in "
              f"{vocabulary_ms:.1f} ms (once per catalog version)")  # fmt: skip

        async def keyword_all(texts: list[str]) -> None:
            async with pool.acquire() as connection:
                for text in texts:
                    await queries.keyword(connection, text, limit=CANDIDATES)

        async def parse_all() -> None:
            for text in QUERIES:
                parse_query(text, vocabulary)

        parsed = [parse_query(text, vocabulary) for text in QUERIES]

        def filters_of(found: dict[str, str]) -> SearchFilters:
            from decimal import Decimal

            typed: dict[str, Any] = {k: Decimal(v) if k.startswith("price") else v for k, v in found.items()}
            return SearchFilters(**typed)

        async with pool.acquire() as connection:
            # What each query's search ranks anyway (the service ranks it once per request).
            searched = [
                [
                    h.id
                    for h in await queries.keyword(
                        connection, p.q or "clothes", limit=CANDIDATES, filters=filters_of(p.filters)
                    )
                ]
                for p in parsed
            ]

        async def facets_candidates() -> None:
            # As the service does for a keyword query beside its search: the search's ranked
            # candidates, the words' matches without the filters, unranked (so a field's own
            # filter hides none of its values), then the counts.
            async with pool.acquire() as connection:
                for p, ranked in zip(parsed, searched, strict=True):
                    text, filters = p.q or "clothes", filters_of(p.filters)
                    ids = dict.fromkeys(ranked)
                    if filters.active:
                        ids.update(dict.fromkeys(await queries.keyword_ids(connection, text, limit=CANDIDATES)))
                    await count_facets(connection, FACET_NAMES, filters, list(ids))

        async def facets_browse(filters: SearchFilters) -> Callable[[], Awaitable[object]]:
            async def work() -> None:
                async with pool.acquire() as connection:
                    await count_facets(connection, FACET_NAMES, filters)

            return work

        async def forgiving(filters: SearchFilters) -> Callable[[], Awaitable[object]]:
            # Under filters, words are judged on the items the filters allow (one more SQL round).
            async def work() -> None:
                async with pool.acquire() as connection:
                    for text in TYPOS:
                        exact = await queries.keyword(connection, text, limit=CANDIDATES, filters=filters)
                        if len(exact) < FORGIVE_BELOW:
                            await forgive(connection, queries, text, filters, exact, words, synonyms)

            return work

        async def keyword_queries() -> None:
            await keyword_all(QUERIES)

        n = len(QUERIES)
        tenth = SearchFilters(category=catalog.FILTER_10)
        rows = [
            (
                "keyword search, per query (baseline)",
                await _median_ms(rounds, lambda: keyword_all(QUERIES)) / n,
            ),
            ("parse a query", await _median_ms(rounds, parse_all) / n),
            ("facets=all beside a query's search", await _median_ms(rounds, facets_candidates) / n),
            (
                "facets=all browsing, category=dresses (10%)",
                await _median_ms(rounds, await facets_browse(tenth)),
            ),
            (
                "facets=all browsing, category=dresses + size M",
                await _median_ms(rounds, await facets_browse(replace(tenth, size="M"))),
            ),
            ("facets=all browsing, no filter", await _median_ms(rounds, await facets_browse(SearchFilters()))),
            (
                "keyword search with typos, per query",
                await _median_ms(rounds, await forgiving(SearchFilters())) / len(TYPOS),
            ),
            (
                "keyword search with typos, category=dresses, per query",
                await _median_ms(rounds, await forgiving(tenth)) / len(TYPOS),
            ),
        ]
        baseline = rows[0][1]
        print(f"\n{items:,} items, median of {rounds} rounds")
        for name, ms in rows:
            print(f"  {name:<56} {ms:8.2f} ms   x{ms / baseline:5.2f} of baseline")
        added = rows[1][1] + rows[2][1]
        print(f"\nparse + facets added to a query's search: {added:.2f} ms (target <= 5 ms)")
        print(f"facets for a 10% filter: {rows[3][1]:.2f} ms (target <= 20 ms)")
        await pool.close()
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.items, args.rounds))


if __name__ == "__main__":
    main()
