"""Filtered searches by category run on that category's own partial index, kept in step by triggers."""

from __future__ import annotations

from quart import Quart

from tests.webapp.conftest import services_of
from tests.webapp.test_search_features import _big_app, get, seed_catalog  # noqa: F401 (fixture)
from webapp.db import index_distance
from webapp.search.filters import SearchFilters


async def test_category_filters_use_their_partial_index_and_fill_exact_pages(big_app: Quart) -> None:
    rows = [{"category": "Dresses" if n % 10 == 0 else "Tops", "price": 5 + n % 50} for n in range(3000)]
    await seed_catalog(big_app, rows, seed=7)
    services = services_of(big_app)
    queries = services.queries
    assert queries is not None
    async with services.pool.acquire() as connection:
        # big_app scans up to 100 rows exactly: both categories are past it.
        assert await queries.ensure_category_indexes(connection) == {"dresses", "tops"}
        plan = "\n".join(
            r[0]
            for r in await connection.fetch(
                f"EXPLAIN SELECT 1 FROM item_embeddings e WHERE e.model_key = '{services.model_key}' "
                f"AND e.category = 'dresses' ORDER BY "
                + index_distance(queries.dim, param=f"array_fill(0.1, ARRAY[{queries.dim}])::vector")
                + " LIMIT 10"
            )
        )
        assert queries.category_index_name("dresses") in plan
    vector = await services.embedder.embed_text("summer dress")
    client = big_app.test_client()
    for filters in ({"category": "DRESSES"}, {"category": "dresses", "price_max": "20"}):
        page = await get(client, q="summer dress", mode="semantic", limit=20, **filters)
        assert len(page["items"]) == 20 and {i["category"] for i in page["items"]} == {"Dresses"}
        assert all(float(i["price"]) <= float(filters.get("price_max", 1e9)) for i in page["items"])
        async with services.pool.acquire() as connection:
            exact = await connection.fetch(
                """SELECT i.id FROM item_embeddings e JOIN items i ON i.id = e.item_id
                   WHERE lower(i.category) = 'dresses' AND i.price <= $2
                   ORDER BY e.embedding <=> $1 LIMIT 20""",
                vector,
                float(filters.get("price_max", 1e9)),
            )
        found = {i["id"] for i in page["items"]}
        assert len(found & {r["id"] for r in exact}) >= 19  # recall@20 >= 0.95


async def test_a_recategorised_item_moves_between_category_searches(big_app: Quart) -> None:
    ids = await seed_catalog(
        big_app, [{"category": "Coats" if n < 150 else "Bags"} for n in range(300)], seed=9
    )
    services = services_of(big_app)
    queries = services.queries
    assert queries is not None
    async with services.pool.acquire() as connection:
        assert await queries.ensure_category_indexes(connection) == {"coats", "bags"}
        await connection.execute("UPDATE items SET category = 'Bags' WHERE id = $1", ids[0])
        await connection.execute("UPDATE catalog_state SET version = version + 1 WHERE id = 1")
        assert (
            await connection.fetchval("SELECT category FROM item_embeddings WHERE item_id = $1", ids[0])
            == "bags"
        )
    client = big_app.test_client()

    async def everything(category: str) -> list[int]:
        pages = [
            await get(client, q="warm coat", mode="semantic", limit=100, offset=o, category=category)
            for o in (0, 100)
        ]
        return [item["id"] for page in pages for item in page["items"]]

    coats, bags = await everything("coats"), await everything("bags")
    assert len(coats) == len(set(coats)) == 149 and ids[0] not in coats
    assert len(bags) == len(set(bags)) == 151 and ids[0] in bags
    async with services.pool.acquire() as connection:
        assert not await queries._few_match(connection, SearchFilters(category="coats"))
