"""The search log: searches and clicks in, the Demand page's figures and gaps out."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY
from quart import Quart
from quart.testing import QuartClient
from werkzeug.datastructures import FileStorage

from tests.webapp.analytics.conftest import click, search, seed_ready_items, today
from tests.webapp.conftest import image_file, photo, services_of, wait_ready
from webapp.analytics import repo
from webapp.analytics.gaps import Gap, demand_gaps
from webapp.analytics.log import search_log_of
from webapp.analytics.retention import upkeep
from webapp.app import create_app
from webapp.config import AnalyticsSettings, Settings
from webapp.embedding.embedder import ClipModel

JACKETS = [
    {
        "title": "Levi's trucker jacket",
        "brand": "Levi's",
        "category": "outerwear",
        "size": "M",
        "colour": "blue",
    },
    {
        "title": "Levi's denim jacket",
        "brand": "Levi's",
        "category": "outerwear",
        "size": "M",
        "colour": "black",
    },
    {"title": "Wool coat", "brand": "Uniqlo", "category": "outerwear", "size": "M", "colour": "grey"},
    {"title": "Striped shirt", "brand": "Uniqlo", "category": "tops", "size": "S", "colour": "white"},
]


@dataclass(frozen=True)
class Figures:
    top: list[repo.QueryFigures]
    none: list[repo.QueryFigures]
    clicked: list[repo.QueryFigures]
    never: list[repo.QueryFigures]
    gaps: list[Gap]
    totals: repo.Totals


async def _figures(app: Quart) -> Figures:
    async with services_of(app).pool.acquire() as connection:
        period = repo.Period.last(7)
        return Figures(
            top=await repo.top_searches(connection, period),
            none=await repo.no_result_searches(connection, period),
            clicked=await repo.clicked_queries(connection, period),
            never=await repo.never_clicked(connection, period),
            gaps=demand_gaps(await repo.unmet_searches(connection, period)),
            totals=await repo.totals(connection, period),
        )


async def test_searches_and_clicks_give_figures_and_gaps_raw_and_rolled_up(
    app: Quart, client: QuartClient
) -> None:
    ids = await seed_ready_items(app, JACKETS)
    # Three shoppers look for a Levi's jacket; two open a result (the first, then the second).
    found = [await search(client, q="levi's jacket", session_id=f"tab-{n}") for n in range(3)]
    assert all(page["items"] for page in found)
    assert len({page["search_id"] for page in found}) == 3
    await click(client, found[0]["search_id"], ids[0], 0, "tab-0")
    await click(client, found[1]["search_id"], ids[1], 1, "tab-1")
    # Two ask for what the shop does not have: a jacket in L (it has M) under 60, said two ways.
    for q in ("carhartt jacket size L under 60", "Carhartt  jacket size L under $55"):
        page = await search(client, q=q, session_id="tab-9")
        assert page["items"] == [] and page["interpreted"]["filters"]["size"] == "L"
    # Browsing a size nobody stocks is unmet demand too; a second page is not a new search.
    assert (await search(client, size="XXL", brand="Uniqlo"))["items"] == []
    await search(client, q="levi's jacket", offset=20)
    await search(client, q="striped shirt")
    await search_log_of(services_of(app)).flush()  # the writer may have written some already
    async with services_of(app).pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM search_events") == 8

    raw = await _figures(app)
    top = raw.top
    assert [(f.query, f.searches) for f in top][:1] == [("levi's jacket", 3)]
    levis = next(f for f in top if f.query == "levi's jacket")
    assert (levis.clicked_searches, levis.clicks) == (2, 2)
    assert levis.click_through == pytest.approx(2 / 3)
    assert levis.mean_position == pytest.approx(1.5)
    assert {f.query for f in raw.none} == {
        "carhartt jacket size l under 60",
        "carhartt jacket size l under $55",
    }
    assert [f.query for f in raw.never] == ["striped shirt"]
    gaps = raw.gaps
    # Few results (the shop has two Levi's jackets) are a gap as well as none.
    assert [(g.description, g.searches, g.most_results) for g in gaps] == [
        ("Levi's jacket", 3, 2),
        ("carhartt jacket in L under $60", 2, 0),
        ("Uniqlo anything in XXL", 1, 0),
    ]
    link = gaps[1].key.link("https://shop.example/search")
    assert link == "https://shop.example/search?q=carhartt+jacket&size=L&price_max=60"
    assert raw.totals == repo.Totals(searches=7, photo_searches=0, no_results=3, clicked_searches=2)

    # Rolled up (and the raw rows gone, as after their retention): the same figures.
    pool = services_of(app).pool
    assert await upkeep(pool, AnalyticsSettings())
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM search_daily WHERE day = $1", today()) == 5
        await connection.execute("DELETE FROM search_events; DELETE FROM search_clicks")
        # Read as if the rollups were a day old: only the days before the newest are trusted as final.
        await connection.execute("UPDATE search_daily SET day = day - 1")
    async with pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO search_daily SELECT $1::date, 'text', 'x', 'x', '{}', 0, 0, 0, 0, 0, 0, 0", today()
        )
    rolled = await _figures(app)
    assert rolled.none == raw.none and rolled.clicked == raw.clicked and rolled.never == raw.never
    assert rolled.gaps == raw.gaps and rolled.totals == raw.totals
    assert [f for f in rolled.top if f.searches] == top


async def test_every_search_answer_carries_a_search_id_and_bad_session_ids_are_refused(
    app: Quart, client: QuartClient
) -> None:
    await seed_ready_items(app, JACKETS)
    browse = await search(client, brand="Levi's", session_id="0f3c-AB")
    streamed = await client.get("/api/search/stream", query_string={"q": "jacket", "session_id": "tab-1"})
    lines = [line for line in (await streamed.get_data(as_text=True)).splitlines() if line]
    from_photo = await client.post(
        "/api/search/image", query_string={"session_id": "tab-1"}, files={"image": _photo_file()}
    )
    assert from_photo.status_code == 200
    ids = {browse["search_id"], (await from_photo.get_json())["search_id"]}
    ids |= {json.loads(line)["search_id"] for line in lines}
    assert len(ids) == 3 and all(ids)
    for bad in ("x" * 65, "a b", "tab_1", "<script>", ""):
        response = await client.get("/api/search", query_string={"q": "jacket", "session_id": bad})
        assert response.status_code == 422, bad
        assert (await response.get_json())["error"]["code"]
    await search_log_of(services_of(app)).flush()
    async with services_of(app).pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT kind, mode, session_id, query, given FROM search_events ORDER BY id"
        )
    assert [(r["kind"], r["session_id"]) for r in rows] == [
        ("browse", "0f3c-AB"),
        ("text", "tab-1"),
        ("photo", "tab-1"),
    ]
    assert json.loads(rows[0]["given"]) == {"brand": "Levi's"}


def _photo_file() -> FileStorage:
    return image_file(photo(1))


async def test_click_reports_are_bounded_and_store_nothing_about_the_shopper(
    app: Quart, client: QuartClient
) -> None:
    good = {"type": "click", "search_id": "abc_DEF-123", "item_id": 7, "position": 3, "session_id": "tab-1"}
    bad_bodies = [
        {**good, "type": "view"},
        {**good, "item_id": 0},
        {**good, "position": -1},
        {**good, "search_id": "a" * 65},
        {**good, "session_id": "with space"},
        {**good, "extra": "field"},
        {"type": "click"},
    ]
    for body in bad_bodies:
        response = await client.post("/api/events", json=body)
        assert response.status_code == 422, body
    huge = await client.post(
        "/api/events",
        data=b'{"type":"click",' + b" " * 2000 + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    for junk in (b"\xff\xfe\x1bmu", b"{not json", b"\x00"):
        response = await client.post("/api/events", data=junk, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, junk
        assert (await response.get_json())["error"]["code"] == "invalid_json"
    # As text/plain too: a storefront's page sends it across origins without a preflight request.
    plain = await client.post(
        "/api/events", data=json.dumps({**good, "item_id": 8}).encode(), headers={"Content-Type": "text/plain"}
    )
    assert plain.status_code == 202
    ok = await client.post(
        "/api/events", json=good, headers={"User-Agent": "Mozilla/5.0 test", "X-Forwarded-For": "203.0.113.9"}
    )
    assert ok.status_code == 202
    async with services_of(app).pool.acquire() as connection:
        rows = await connection.fetch("SELECT * FROM search_clicks")
    assert len(rows) == 2
    stored = " ".join(str(v) for row in rows for v in row.values())
    assert "Mozilla" not in stored and "203.0.113" not in stored and "127.0.0.1" not in stored
    assert {(r["search_id"], r["item_id"], r["position"]) for r in rows} == {
        ("abc_DEF-123", 7, 3),
        ("abc_DEF-123", 8, 3),
    }


async def test_click_reports_are_rate_limited(settings: Settings, tiny_clip: ClipModel) -> None:
    limited = settings.model_copy(
        update={"limits": settings.limits.model_copy(update={"events_per_s": 0.01, "events_burst": 3})}
    )
    app = create_app(limited, clip=tiny_clip)
    async with app.test_app():
        client = app.test_client()
        body = {"type": "click", "search_id": "s1", "item_id": 1, "position": 0, "session_id": "t"}
        statuses = [(await client.post("/api/events", json=body)).status_code for _ in range(5)]
        assert statuses == [202, 202, 202, 429, 429]


def _dropped() -> float:
    return REGISTRY.get_sample_value("prethrift_search_log_dropped_total", {"reason": "queue_full"}) or 0.0


async def test_a_search_with_the_log_queue_full_still_answers_and_the_drop_is_counted(
    settings: Settings, tiny_clip: ClipModel
) -> None:
    # A queue of one that the writer does not empty during the test (a stalled database).
    stalled = settings.model_copy(
        update={"analytics": AnalyticsSettings(queue_size=1, batch_size=100, flush_interval_s=60)}
    )
    app = create_app(stalled, clip=tiny_clip)
    async with app.test_app():
        await wait_ready(app)
        await seed_ready_items(app, JACKETS)
        client = app.test_client()
        before = _dropped()
        pages = [await search(client, q="jacket") for _ in range(3)]
        assert all(page["items"] and page["search_id"] for page in pages)
        assert _dropped() - before == 2
        assert search_log_of(services_of(app)).pending == 1
        metrics = await client.get("/metrics", scope_base={"client": ("127.0.0.1", 40000)})
        assert 'prethrift_search_log_dropped_total{reason="queue_full"}' in await metrics.get_data(as_text=True)


async def test_expiry_removes_exactly_what_is_past_retention(
    app: Quart, monkeypatch: pytest.MonkeyPatch
) -> None:
    from webapp.analytics import retention
    from webapp.analytics.log import SearchRecord

    monkeypatch.setattr(retention, "DELETE_BATCH", 2)  # several batches per table
    now = dt.datetime(2026, 6, 1, 12, tzinfo=dt.UTC)
    settings = AnalyticsSettings(raw_retention_days=30, rollup_retention_days=400)
    log = search_log_of(services_of(app))
    ages = [0, 1, 29, 29.99, 30.01, 31, 45, 100]
    for n, days in enumerate(ages):
        log.record(
            SearchRecord(
                f"s{n}", None, "text", "hybrid", 1, False, 1.0, query=f"q{n}", at=now - dt.timedelta(days=days)
            )
        )
    await log.flush()
    pool = services_of(app).pool
    async with pool.acquire() as connection:
        for n, days in enumerate(ages):
            await connection.execute(
                "INSERT INTO search_clicks (search_id, item_id, position, at) VALUES ($1, 1, 0, $2)",
                f"s{n}",
                now - dt.timedelta(days=days),
            )
        for days in (0, 399, 400, 401, 500):
            await connection.execute(
                "INSERT INTO search_daily VALUES ($1, 'text', $2, '', '{}', 1, 0, 0, 1, 0, 0, 0)",
                (now - dt.timedelta(days=days)).date(),
                f"d{days}",
            )
        deleted = await retention.expire(connection, settings, now)
        assert deleted == {"search_events": 4, "search_clicks": 4, "search_daily": 2}
        kept = [
            r["search_id"] for r in await connection.fetch("SELECT search_id FROM search_events ORDER BY id")
        ]
        clicks = [
            r["search_id"] for r in await connection.fetch("SELECT search_id FROM search_clicks ORDER BY id")
        ]
        rollups = [
            r["query"] for r in await connection.fetch("SELECT query FROM search_daily ORDER BY day DESC")
        ]
    assert kept == clicks == ["s0", "s1", "s2", "s3"]
    assert rollups == ["d0", "d399", "d400"]


async def test_the_worker_rolls_up_the_log(app: Quart, client: QuartClient) -> None:
    from webapp.runtime import run_worker

    await seed_ready_items(app, JACKETS)
    await search(client, q="wool coat")
    services = services_of(app)
    await search_log_of(services).flush()
    stop = asyncio.Event()
    running = asyncio.create_task(run_worker(services, stop))
    try:
        async with asyncio.timeout(10):
            while True:
                async with services.pool.acquire() as connection:
                    if await connection.fetchval(
                        "SELECT sum(searches) FROM search_daily WHERE query = 'wool coat'"
                    ):
                        break
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running


async def test_trending_compares_with_the_period_before_and_old_days_come_from_rollups(app: Quart) -> None:
    from webapp.analytics.log import SearchRecord

    now = dt.datetime.now(dt.UTC)
    log = search_log_of(services_of(app))
    searches = [("red dress", 0)] * 3 + [("red dress", 8)] + [("blue coat", 0)] + [("blue coat", 9)] * 2
    for n, (query, days_ago) in enumerate(searches):
        log.record(
            SearchRecord(f"t{n}", None, "text", "hybrid", 5, False, 1.0, query=query, terms=query,
                         at=now - dt.timedelta(days=days_ago))
        )  # fmt: skip
    await log.flush()
    pool = services_of(app).pool
    async with pool.acquire() as connection:
        trends = await repo.trending(connection, repo.Period.last(7))
        assert [(t.query, t.searches, t.before, t.change) for t in trends] == [("red dress", 3, 1, 2)]
        # Forty days ago is past the raw log's retention: only its rollup is left, and a 90-day
        # period still counts it.
        old = (now - dt.timedelta(days=40)).date()
        await connection.execute(
            "INSERT INTO search_daily VALUES ($1, 'text', 'blue coat', 'blue coat', '{}', 4, 4, 0, 0, 0, 0, 0)",
            old,
        )
        assert await upkeep(pool, AnalyticsSettings())
        top = {f.query: f for f in await repo.top_searches(connection, repo.Period.last(90))}
        assert (top["blue coat"].searches, top["blue coat"].no_results) == (7, 4)
        assert top["red dress"].searches == 4
        assert [f.query for f in await repo.no_result_searches(connection, repo.Period.last(7))] == []
