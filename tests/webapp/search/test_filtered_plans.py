"""Filtered searches by category, colour or a price ceiling run on their own partial index, kept in
step by triggers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from quart import Quart

from tests.webapp.conftest import services_of
from tests.webapp.helpers import get, seed_catalog
from webapp.adapters.db import index_distance, sql_literal
from webapp.catalog.filters import SearchFilters
from webapp.search.graphs import graph_predicate
from webapp.search.repo import VectorQueries


async def vector_plan(connection: Any, queries: VectorQueries, column: str, value: str) -> str:
    """EXPLAIN of a nearest-neighbour query restricted the way a plan on that graph restricts it."""
    rows = await connection.fetch(
        f"EXPLAIN SELECT 1 FROM item_embeddings e WHERE e.model_key = {sql_literal(queries.model_key)} "
        f"AND e.{graph_predicate(column, value)} ORDER BY "
        + index_distance(queries.dim, param=f"array_fill(0.1, ARRAY[{queries.dim}])::vector")
        + " LIMIT 10"
    )
    return "\n".join(r[0] for r in rows)


async def test_category_filters_use_their_partial_index_and_fill_exact_pages(big_app: Quart) -> None:
    rows = [{"category": "Dresses" if n % 10 == 0 else "Tops", "price": 5 + n % 50} for n in range(3000)]
    await seed_catalog(big_app, rows, seed=7)
    services = services_of(big_app)
    queries = services.queries
    assert queries is not None
    async with services.pool.acquire() as connection:
        # big_app scans up to 100 rows exactly: both categories are past it, and so are the items
        # at or under the price ceiling (prices 5-54: 12% of the catalog).
        assert await queries.graphs.ensure(connection) == {
            ("category", "dresses"): 300, ("category", "tops"): 2700, ("price", "10"): 360,
        }  # fmt: skip
        assert queries.graphs.index_name("category", "dresses") in await vector_plan(
            connection, queries, "category", "dresses"
        )
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
        assert set(await queries.graphs.ensure(connection)) == {("category", "coats"), ("category", "bags")}
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
        assert not (await queries.graphs.plan(connection, SearchFilters(category="coats"), 20)).exact


async def test_colour_filters_search_the_colour_graph_and_follow_a_recoloured_item(big_app: Quart) -> None:
    # Colour does not follow the vectors: 40% black, 10% red, the rest white, dealt round-robin.
    colours = ["Black", "Black", "Black", "Black", "Red"] + ["White"] * 5
    rows = [{"colour": colours[n % 10], "category": "Tops"} for n in range(3000)]
    ids = await seed_catalog(big_app, rows, seed=11)
    services = services_of(big_app)
    queries = services.queries
    assert queries is not None
    async with services.pool.acquire() as connection:
        graphs = await queries.graphs.ensure(connection)
        assert graphs == {("colour", "black"): 1200, ("colour", "red"): 300, ("colour", "white"): 1500,
                          ("category", "tops"): 3000}  # fmt: skip
        # The smallest graph that holds every match is searched: red's, not the category's.
        filters = SearchFilters(category="tops", colour="RED")
        assert (await queries.graphs.plan(connection, filters, 20)).graph == ("colour", "red")
    vector = await services.embedder.embed_text("red top")
    client = big_app.test_client()

    async def exact_reds(limit: int) -> list[int]:
        async with services.pool.acquire() as connection:
            rows = await connection.fetch(
                """SELECT i.id FROM item_embeddings e JOIN items i ON i.id = e.item_id
                   WHERE lower(i.colour) = 'red' ORDER BY e.embedding <=> $1, i.id LIMIT $2""",
                vector,
                limit,
            )
        return [r["id"] for r in rows]

    page = await get(client, q="red top", mode="semantic", limit=20, colour="red", parse="false")
    found = [item["id"] for item in page["items"]]
    assert len(found) == 20 and {item["colour"] for item in page["items"]} == {"Red"}
    assert len(set(found) & set(await exact_reds(20))) >= 19  # recall@20 >= 0.95

    # A white item repainted red: its embedding row follows, and red searches now include it.
    repainted = ids[5]
    async with services.pool.acquire() as connection:
        await connection.execute("UPDATE items SET colour = 'Red' WHERE id = $1", repainted)
        await connection.execute("UPDATE catalog_state SET version = version + 1 WHERE id = 1")
        copied = await connection.fetchval("SELECT colour FROM item_embeddings WHERE item_id = $1", repainted)
        assert copied == "red"
    pages = [
        await get(client, q="red top", mode="semantic", limit=100, offset=o, colour="red", parse="false")
        for o in range(0, 400, 100)
    ]
    reds = [item["id"] for p in pages for item in p["items"]]
    assert len(reds) == len(set(reds)) == 301 and repainted in reds


async def test_price_ceilings_search_their_graph_and_follow_a_repriced_item(big_app: Quart) -> None:
    # Price does not follow the vectors: $3-$50 dealt round-robin, 17% at or under $10 (504 items).
    rows = [{"price": 3 + n % 48, "category": "Tops" if n % 2 else "Jeans"} for n in range(3000)]
    ids = await seed_catalog(big_app, rows, seed=13)
    services = services_of(big_app)
    queries = services.queries
    assert queries is not None
    async with services.pool.acquire() as connection:
        graphs = await queries.graphs.ensure(connection)
        under = {ceiling: sum(1 for row in rows if row["price"] <= ceiling) for ceiling in (8, 10)}
        assert {key: n for key, n in graphs.items() if key[0] == "price"} == {("price", "10"): under[10]}
        # "Under $8" searches the ceiling's graph, even with a category that has its own (larger)
        # one; a price range reaching past the ceiling searches the main graph.
        cheap = SearchFilters(price_max=Decimal(8))
        for filters in (cheap, SearchFilters(category="tops", price_max=Decimal(8))):
            assert (await queries.graphs.plan(connection, filters, 20)).graph == ("price", "10")
        past_the_ceiling = SearchFilters(price_min=Decimal(5), price_max=Decimal(15))
        assert (await queries.graphs.plan(connection, past_the_ceiling, 20)).graph is None
        assert queries.graphs.index_name("price", "10") in await vector_plan(connection, queries, "price", "10")
    vector = await services.embedder.embed_text("cheap top")
    client = big_app.test_client()

    async def exact_under(price: int, limit: int) -> list[int]:
        async with services.pool.acquire() as connection:
            rows = await connection.fetch(
                """SELECT i.id FROM item_embeddings e JOIN items i ON i.id = e.item_id
                   WHERE i.price <= $2 ORDER BY e.embedding <=> $1, i.id LIMIT $3""",
                vector,
                price,
                limit,
            )
        return [r["id"] for r in rows]

    page = await get(client, q="cheap top", mode="semantic", limit=20, price_max="8", parse="false")
    found = [item["id"] for item in page["items"]]
    assert len(found) == 20 and all(Decimal(item["price"]) <= 8 for item in page["items"])
    assert len(set(found) & set(await exact_under(8, 20))) >= 19  # recall@20 >= 0.95

    # A $50 item marked down to $4: its embedding row follows, and "under $8" now finds it.
    marked_down = ids[47]
    async with services.pool.acquire() as connection:
        await connection.execute("UPDATE items SET price = 4 WHERE id = $1", marked_down)
        await connection.execute("UPDATE catalog_state SET version = version + 1 WHERE id = 1")
        copied = await connection.fetchval("SELECT price FROM item_embeddings WHERE item_id = $1", marked_down)
        assert copied == 4
    pages = [
        await get(client, q="cheap top", mode="semantic", limit=100, offset=o, price_max="8", parse="false")
        for o in range(0, 400, 100)
    ]
    found = [item["id"] for p in pages for item in p["items"]]
    assert len(found) == len(set(found)) == under[8] + 1 and marked_down in found
