"""Forgiveness decided on the items the filters allow, against the real PostgreSQL."""

from __future__ import annotations

from typing import Any

from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import services_of
from tests.webapp.search.conftest import search, seed_items
from webapp.config import Settings
from webapp.search.forgive import MAX_ROUNDS

ACME = [{"title": "Leather chelsea boots", "brand": "Acme", "category": "shoes"}]
# Other brands' items: "boots" common, "trainers" less so, so that "boots" would be let go first.
OTHERS = [
    *({"title": f"Walking boots {n}", "brand": "Trekker", "category": "shoes"} for n in range(6)),
    *({"title": f"White trainers {n}", "brand": "Runabout", "category": "shoes"} for n in range(3)),
]


async def test_the_same_query_finds_the_same_item_whatever_other_brands_hold(
    app: Quart, client: QuartClient
) -> None:
    await seed_items(app, ACME)
    alone = await search(client, q="trainers boots", mode="keyword", brand="Acme")
    assert [i["title"] for i in alone["items"]] == ["Leather chelsea boots"]
    # Other brands now hold "trainers": it is still a word no Acme item holds.
    await seed_items(app, OTHERS, seed=8)
    beside = await search(client, q="trainers boots", mode="keyword", brand="Acme")
    assert [i["title"] for i in beside["items"]] == ["Leather chelsea boots"]
    assert [
        i["title"] for i in (await search(client, q="sneakers boots", mode="keyword", brand="Acme"))["items"]
    ] == ["Leather chelsea boots"]
    # Unfiltered, the whole catalog's counts still decide: "boots", the commonest, is let go.
    everyone = await search(client, q="trainers boots", mode="keyword", limit=50)
    assert {i["title"] for i in everyone["items"]} >= {f"White trainers {n}" for n in range(3)}


async def test_a_word_only_other_brands_hold_is_corrected_to_one_the_brand_holds(
    app: Quart, client: QuartClient
) -> None:
    await seed_items(app, [*ACME, *OTHERS, {"title": "Chelsa print scarf", "brand": "Printco"}])
    # "chelsa" is a word of the catalog, but no Acme item's: one edit from Acme's "chelsea".
    page = await search(client, q="chelsa boots", mode="keyword", brand="Acme")
    assert [i["title"] for i in page["items"]] == ["Leather chelsea boots"]


class TextRounds:
    """Counts the SQL rounds that match text (the exact pass, the count under filters, forgiving)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        if "search_tsv @@" in record.query:
            self.count += 1


async def test_judging_words_under_filters_keeps_the_rounds_bounded(
    app: Quart, client: QuartClient, settings: Settings
) -> None:
    await seed_items(app, [*ACME, *OTHERS])
    rounds = TextRounds()
    pool = services_of(app).pool
    connections = [await pool.acquire() for _ in range(settings.database.pool_max)]
    for connection in connections:
        connection.add_query_logger(rounds)
    for connection in connections:
        await pool.release(connection)
    words = " ".join(f"zq{n}x" for n in range(40))
    page = await search(client, q=f"trainers {words} boots", mode="keyword", brand="Acme", parse="false")
    assert page["items"] == []
    # The exact pass, one count of the query's terms among Acme's items, and forgiving rounds:
    # together no more than the exact pass and MAX_ROUNDS, as without filters.
    assert 2 <= rounds.count <= 1 + MAX_ROUNDS, rounds.count
