"""What shoppers ask for: filters that still fill pages, exact keyword hits, scores, sorting."""

from __future__ import annotations

from decimal import Decimal

from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import services_of
from tests.webapp.helpers import get, seed_catalog
from webapp.catalog.filters import SearchFilters


async def test_filtered_vector_search_fills_pages_at_1_and_10_percent(big_app: Quart) -> None:
    rows = [
        {"category": "common" if n % 10 == 0 else "other", "colour": "rare" if n % 100 == 0 else "plain"}
        for n in range(3000)
    ]
    await seed_catalog(big_app, rows)
    client = big_app.test_client()
    services = services_of(big_app)
    queries = services.queries
    assert queries is not None
    vector = await services.embedder.embed_text("jacket")
    for facet, value in (("category", "common"), ("colour", "rare")):
        page = await get(client, q="jacket", mode="semantic", limit=20, **{facet: value})
        assert len(page["items"]) == 20, f"{facet}={value} returned a short page"
        assert {item[facet] for item in page["items"]} == {value}
        scores = [item["score"] for item in page["items"]]
        assert scores == sorted(scores, reverse=True)
        # Against exact search over the filtered set:
        async with services.pool.acquire() as connection:
            exact = await connection.fetch(
                f"""SELECT i.id FROM item_embeddings e JOIN items i ON i.id = e.item_id
                    WHERE lower(i.{facet}) = $2 ORDER BY e.embedding <=> $1 LIMIT 20""",
                vector,
                value,
            )
        recall = len({r["id"] for r in exact} & {item["id"] for item in page["items"]}) / 20
        assert recall >= 0.9, (facet, recall)
        # Pages of a filtered search never repeat an item.
        pages = [
            await get(client, q="jacket", mode="semantic", limit=10, offset=o, **{facet: value})
            for o in (0, 10, 20)
        ]
        ids = [item["id"] for p in pages for item in p["items"]]
        assert len(ids) == 30 and len(set(ids)) == 30
    # Both plans were exercised: 300 matches go through HNSW, 30 are scanned exactly.
    async with services.pool.acquire() as connection:
        assert not (await queries.graphs.plan(connection, SearchFilters(category="common"), 20)).exact
        assert (await queries.graphs.plan(connection, SearchFilters(colour="rare"), 20)).exact


async def test_filter_only_browsing_sorted_by_newest_and_price(app: Quart, client: QuartClient) -> None:
    rows = [
        {"category": "shoes" if n % 2 else "bags", "price": 5 + (n * 37) % 100, "title": f"Thing {n}"}
        for n in range(40)
    ]
    await seed_catalog(app, rows)
    newest = await get(client, category="Shoes", sort="newest", limit=5)
    titles = [i["title"] for i in newest["items"]]
    assert titles == ["Thing 39", "Thing 37", "Thing 35", "Thing 33", "Thing 31"]
    assert all(i["score"] is None for i in newest["items"])

    cheap = await get(client, category="shoes", sort="price_asc", limit=100)
    prices = [Decimal(i["price"]) for i in cheap["items"]]
    assert len(prices) == 20 and prices == sorted(prices)
    dear = await get(client, category="shoes", sort="price_desc", limit=3, price_max=60)
    assert [Decimal(i["price"]) for i in dear["items"]] == sorted([p for p in prices if p <= 60], reverse=True)[
        :3
    ]
    assert (await get(client, price_min=1000))["items"] == []


async def test_exact_brand_and_model_rank_first_in_hybrid(app: Quart, client: QuartClient) -> None:
    titles = [
        ("Levi's", "501 original fit jeans", "jeans"),
        ("Levi's", "505 regular fit jeans", "jeans"),
        ("Levi's", "Trucker jacket", "outerwear"),
        ("Wrangler", "Cowboy cut jeans, a 501 alternative", "jeans"),
        ("Lee", "Rider jeans", "jeans"),
    ] + [("Zara", f"Plain tee {n}", "tops") for n in range(30)]
    ids = await seed_catalog(app, [{"brand": b, "title": t, "category": c} for b, t, c in titles], seed=3)
    for query in ("levi's 501", "Levis 501 jeans", "501 levi's"):
        page = await get(client, q=query, limit=5)
        assert page["items"][0]["id"] == ids[0], (query, [i["title"] for i in page["items"]])
    keyword = await get(client, q="wrangler", mode="keyword")
    assert [i["id"] for i in keyword["items"]] == [ids[3]]
    assert keyword["items"][0]["score"] is None  # no vector in keyword mode
    hybrid = await get(client, q="levi's 501", limit=40)
    assert all(i["score"] is not None and i["relevance"] is not None for i in hybrid["items"])
    relevance = [i["relevance"] for i in hybrid["items"]]
    assert relevance == sorted(relevance, reverse=True)
    # With no word-for-word match there is nothing to fuse: hybrid is the semantic ranking.
    unmatched = await get(client, q="velvet opera gloves", limit=7, offset=3)
    semantic = await get(client, q="velvet opera gloves", limit=7, offset=3, mode="semantic")
    assert [i["id"] for i in unmatched["items"]] == [i["id"] for i in semantic["items"]]


async def test_min_score_cuts_weak_semantic_matches(app: Quart, client: QuartClient) -> None:
    await seed_catalog(app, [{"title": f"Knit {n}"} for n in range(50)], seed=5)
    everything = await get(client, q="knit", mode="semantic", limit=100)
    scores = sorted(i["score"] for i in everything["items"])
    cutoff = scores[len(scores) // 2]
    strong = await get(client, q="knit", mode="semantic", limit=100, min_score=cutoff)
    assert strong["items"] and all(i["score"] >= cutoff for i in strong["items"])
    assert len(strong["items"]) < len(everything["items"])


async def test_sorting_a_query_by_price_keeps_only_matches(app: Quart, client: QuartClient) -> None:
    rows = [{"title": f"Wool scarf {n}", "price": 50 - n} for n in range(10)]
    rows += [{"title": f"Cotton shirt {n}", "price": n} for n in range(10)]
    await seed_catalog(app, rows, seed=9)
    page = await get(client, q="wool scarf", mode="keyword", sort="price_asc")
    assert [i["title"] for i in page["items"]][:2] == ["Wool scarf 9", "Wool scarf 8"]
    assert all("scarf" in i["title"] for i in page["items"])


async def test_hybrid_pages_are_stable_and_never_repeat(app: Quart, client: QuartClient) -> None:
    await seed_catalog(
        app, [{"title": f"Denim jacket {n}", "brand": "Levi's" if n % 3 else "Lee"} for n in range(60)]
    )
    ids: list[int] = []
    for offset in range(0, 60, 15):
        page = await get(client, q="denim jacket", limit=15, offset=offset)
        ids += [i["id"] for i in page["items"]]
    assert len(ids) == 60 and len(set(ids)) == 60
    again = await get(client, q="denim jacket", limit=15, offset=15)
    assert [i["id"] for i in again["items"]] == ids[15:30]
