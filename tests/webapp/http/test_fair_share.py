"""Hostile traffic that stays within a rate: expensive queries, concurrency, and suggestion
poisoning. Each client gets a bounded share of the work, and no client can steer what every
shopper is suggested."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from quart import Quart
from quart.typing import TestClientProtocol as Client

from tests.webapp.conftest import service_env, services_of, wait_ready
from tests.webapp.helpers import prethrift, seed_catalog
from webapp.app import create_app
from webapp.config import LimitsSettings, Settings
from webapp.embedding.embedder import ClipModel
from webapp.search.forgive import MAX_ROUNDS
from webapp.suggest.repo import purge_expired

CATALOG = [
    {"title": "Faded denim jacket", "brand": "Levi's", "category": "outerwear", "colour": "blue"},
    {"title": "Denim shorts", "brand": "Lee", "category": "shorts", "colour": "blue"},
    {"title": "Floral summer dress", "category": "dresses", "colour": "red"},
    {"title": "Wool coat", "category": "outerwear", "colour": "grey"},
]


def _limited(settings: Settings, **limits: Any) -> Settings:
    """Clients told apart by the X-Forwarded-For entry of one trusted proxy, as behind the ALB."""
    return settings.model_copy(update={"limits": LimitsSettings(trusted_proxies=1, **limits)})


@pytest.fixture(name="fair_app")
async def _fair_app(settings: Settings, tiny_clip: ClipModel) -> AsyncIterator[Quart]:
    # The search rate is raised so that what is seen is what the suggestions make of the searches.
    app = create_app(_limited(settings, search_per_s=1000.0, search_burst=1000), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        yield app


def nonsense(words: int, seed: int = 7) -> str:
    """Two-letter words no catalog holds: a hundred of them fit the 300 characters a query may have."""
    rng = random.Random(seed)
    return " ".join("".join(rng.choices("bcdfghjklmnpqrstvwxz", k=2)) for _ in range(words))


class ForgivingRounds:
    """Counts the forgiving keyword statements the app sends, on every connection of its pool
    (asyncpg's query logger sees each statement as the server receives it)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, record: Any) -> None:
        if "ts_rank_cd" in record.query and "NOT i.id = ANY" in record.query:
            self.count += 1

    async def watch(self, pool: asyncpg.Pool, size: int) -> None:
        connections = [await pool.acquire() for _ in range(size)]
        for connection in connections:
            connection.add_query_logger(self)
        for connection in connections:
            await pool.release(connection)


async def test_a_hundred_word_keyword_query_costs_a_bounded_number_of_sql_rounds(
    fair_app: Quart, settings: Settings
) -> None:
    await seed_catalog(fair_app, CATALOG)
    rounds = ForgivingRounds()
    await rounds.watch(services_of(fair_app).pool, settings.database.pool_max)
    client = fair_app.test_client()
    response = await client.get(
        "/api/search", query_string={"q": nonsense(100), "mode": "keyword", "facets": "all"}
    )
    assert response.status_code == 200
    body = await response.get_json()
    assert body["items"] == [] and "facets" in body
    # One ranking for the page and one for the facet candidates, each within the cap
    # (before the cap: one round per word, about two hundred).
    assert 1 <= rounds.count <= 2 * MAX_ROUNDS, rounds.count

    # Forgiving still works within the cap: a typo among nonsense words finds the jacket.
    rounds.count = 0
    typo = {"q": "jaket " + nonsense(30, seed=8), "mode": "keyword"}
    found = await client.get("/api/search", query_string=typo)
    assert [i["title"] for i in (await found.get_json())["items"]] == ["Faded denim jacket"]
    assert rounds.count <= MAX_ROUNDS


async def _search(client: Client, who: str, q: str, **params: str) -> Any:
    return await client.get("/api/search", query_string={"q": q, **params}, headers={"X-Forwarded-For": who})


async def test_one_clients_concurrent_uncached_searches_past_its_share_get_429(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    # The model waits (max_wait_ms) to fill a batch, so every uncached search stays in flight.
    slow = settings.model_copy(update={"clip": settings.clip.model_copy(update={"max_wait_ms": 300.0})})
    app = create_app(_limited(slow, search_concurrency=2, concurrency_wait_s=0.05), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        await seed_catalog(app, CATALOG)
        client = app.test_client()
        hog = "203.0.113.9"
        flood = [asyncio.create_task(_search(client, hog, f"mustard cord dungarees {n}")) for n in range(12)]
        await asyncio.sleep(0.1)
        shopper = await _search(client, "198.51.100.30", "navy wool coat")
        assert shopper.status_code == 200
        answers = await asyncio.gather(*flood)
        statuses = [a.status_code for a in answers]
        assert 2 <= statuses.count(200) <= 4 and statuses.count(429) >= 8, statuses
        refused = next(a for a in answers if a.status_code == 429)
        assert int(refused.headers["Retry-After"]) >= 1
        assert (await refused.get_json())["error"]["code"] == "rate_limited"

        # Answers already in the result cache cost nothing and are never held back.
        served = next(n for n, a in enumerate(answers) if a.status_code == 200)
        again = await asyncio.gather(
            *(_search(client, hog, f"mustard cord dungarees {served}") for _ in range(10))
        )
        assert [a.status_code for a in again] == [200] * 10
        # Once its searches have answered, the client has its full share again.
        assert (await _search(client, hog, "mustard cord dungarees again")).status_code == 200


async def test_a_request_past_the_share_waits_briefly_for_its_own_to_finish(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    # Each uncached search is in flight for about a second (the model waits to fill a batch).
    slow = settings.model_copy(update={"clip": settings.clip.model_copy(update={"max_wait_ms": 1000.0})})
    app = create_app(_limited(slow, search_concurrency=1, concurrency_wait_s=5.0), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        await seed_catalog(app, CATALOG)
        client = app.test_client()
        first = asyncio.create_task(_search(client, "203.0.113.12", "linen shirt one"))
        await asyncio.sleep(0.3)
        second = asyncio.create_task(_search(client, "203.0.113.12", "linen shirt two"))
        await asyncio.sleep(0.3)
        # One running and one waiting: a third is refused at once, not queued.
        third = await _search(client, "203.0.113.12", "linen shirt three")
        assert third.status_code == 429
        assert [(await first).status_code, (await second).status_code] == [200, 200]


async def test_similar_items_are_rate_limited_per_client(settings: Settings, tiny_clip: ClipModel) -> None:
    app = create_app(_limited(settings, similar_per_s=0.01, similar_burst=3), clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        ids = await seed_catalog(app, CATALOG)
        client = app.test_client()

        async def similar(who: str, item_id: int) -> Any:
            return await client.get(f"/api/items/{item_id}/similar", headers={"X-Forwarded-For": who})

        statuses = [(await similar("203.0.113.10", item_id)).status_code for item_id in ids]
        assert statuses == [200, 200, 200, 429]
        refused = await similar("203.0.113.10", ids[0])
        assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
        assert (await similar("198.51.100.31", ids[0])).status_code == 200


async def searched_by(app: Quart, query: str, clients: list[str]) -> None:
    """``query`` searched once by each of ``clients``, then the query log written out."""
    client = app.test_client()
    for who in clients:
        response = await _search(client, who, query)
        assert response.status_code == 200 and (await response.get_json())["items"]
    await services_of(app).query_log.flush()


async def suggested(app: Quart, prefix: str) -> list[str]:
    """What a shopper typing ``prefix`` is offered (what /ws/suggest sends), freshly computed."""
    svc = services_of(app)
    svc.suggester.forget()
    return (await svc.suggester.suggest(prefix, svc.queries)).completions


def clients(count: int, block: int = 1) -> list[str]:
    return [f"198.51.{block}.{n}" for n in range(1, count + 1)]


async def test_a_query_is_suggested_only_once_three_clients_ran_it(fair_app: Quart) -> None:
    await seed_catalog(fair_app, CATALOG)
    await searched_by(fair_app, "denim super deals", ["203.0.113.66"] * 60)
    assert await suggested(fair_app, "den") == []
    await searched_by(fair_app, "denim jacket", clients(2))
    assert await suggested(fair_app, "den") == []
    await searched_by(fair_app, "Denim  Jacket", clients(1, block=2))
    assert await suggested(fair_app, "den") == ["denim jacket"]
    # More clients rank higher; one client's sixty searches count once.
    await searched_by(fair_app, "denim shorts", clients(4, block=3))
    await searched_by(fair_app, "denim super deals", clients(2, block=4))
    assert await suggested(fair_app, "den") == ["denim shorts", "denim jacket", "denim super deals"]

    async with services_of(fair_app).pool.acquire() as connection:
        keys = await connection.fetch("SELECT client FROM search_query_clients")
    assert len(keys) == 2 + 1 + 4 + 3 and all(len(k["client"]) == 16 for k in keys)
    assert not any(b"198.51" in k["client"] or b"203.0" in k["client"] for k in keys), "no address is stored"


async def test_suggestions_nobody_ran_within_the_retention_disappear(fair_app: Quart) -> None:
    await seed_catalog(fair_app, CATALOG)
    await searched_by(fair_app, "wool coat", clients(3))
    assert await suggested(fair_app, "wo") == ["wool coat"]
    svc = services_of(fair_app)
    retention = svc.settings.suggest.retention_days
    async with svc.pool.acquire() as connection:
        # As if the retention had passed since.
        for table in ("search_queries", "search_query_clients"):
            await connection.execute(
                f"UPDATE {table} SET last_seen = last_seen - make_interval(days => $1)", int(retention) + 1
            )
        assert await suggested(fair_app, "wo") == []
        assert await purge_expired(connection, retention) == 1
        assert await connection.fetchval("SELECT count(*) FROM search_query_clients") == 0
    # Its old clients no longer count: one new client is one client.
    await searched_by(fair_app, "wool coat", clients(1, block=5))
    assert await suggested(fair_app, "wo") == []


async def test_a_removed_suggestion_never_comes_back(fair_app: Quart, settings: Settings) -> None:
    await seed_catalog(fair_app, CATALOG)
    await searched_by(fair_app, "floral summer dress", clients(3))
    assert await suggested(fair_app, "flo") == ["floral summer dress"]
    env = service_env(settings)
    removed = await asyncio.to_thread(prethrift, "suggestions", "remove", "Floral Summer  Dress", env=env)
    assert removed.returncode == 0, removed.stderr
    assert "removed and blocked" in removed.stdout
    assert await suggested(fair_app, "flo") == []
    await searched_by(fair_app, "floral summer dress", clients(5, block=6))
    assert await suggested(fair_app, "flo") == []
    # Text no recorded query could be gets a clear refusal, not the database's error.
    too_long = await asyncio.to_thread(prethrift, "suggestions", "remove", "x" * 101, env=env)
    assert too_long.returncode != 0 and "1 to 100 characters" in too_long.stderr
    assert "Traceback" not in too_long.stderr
    listed = await asyncio.to_thread(prethrift, "suggestions", "list", "--blocked", env=env)
    assert "floral summer dress" in listed.stdout and "x" * 101 not in listed.stdout

    unblocked = await asyncio.to_thread(prethrift, "suggestions", "unblock", "floral summer dress", env=env)
    assert unblocked.returncode == 0, unblocked.stderr
    await searched_by(fair_app, "floral summer dress", clients(3, block=7))
    assert await suggested(fair_app, "flo") == ["floral summer dress"]
    learned = await asyncio.to_thread(prethrift, "suggestions", "list", "--prefix", "FLO", env=env)
    assert learned.stdout.splitlines()[1].split()[:2] == ["3", "3"], learned.stdout


@pytest.mark.parametrize(
    "query", ["denim scam-shop dot example free iphone", "denim from scam-shop.example", "denim casino"]
)
async def test_block_listed_text_is_never_suggested(fair_app: Quart, query: str) -> None:
    await seed_catalog(fair_app, CATALOG)
    await searched_by(fair_app, query, clients(5))
    assert await suggested(fair_app, "den") == []
    async with services_of(fair_app).pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM search_queries") == 0


async def test_streamed_searches_teach_suggestions_by_client_too(fair_app: Quart) -> None:
    await seed_catalog(fair_app, CATALOG)
    client = fair_app.test_client()
    for who in [*clients(2), *["203.0.113.77"] * 5]:
        response = await client.get(
            "/api/search/stream",
            query_string={"q": "grey wool coat", "facets": "all"},
            headers={"X-Forwarded-For": who},
        )
        lines = [line for line in (await response.get_data(as_text=True)).splitlines() if line]
        assert response.status_code == 200 and '"stage":"final"' in lines[-1].replace(" ", "")
    await services_of(fair_app).query_log.flush()
    assert await suggested(fair_app, "grey") == ["grey wool coat"]
