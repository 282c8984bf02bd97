"""Clicks in; daily rollups; and what the Demand page reads: searches by volume, trends, clicks.

Figures count first pages only (paging through results is not searching again) and are by UTC
day. A period is read from the daily rollups up to the newest rolled-up day, and from the raw
log from that day on (the rollup job runs every few minutes; today is always read raw), so the
page is current and still covers periods longer than the raw log is kept.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

# Rows each table of the page shows (and its CSV holds).
SHOWN = 100
# Unmet searches read before grouping them into demand gaps.
GAP_CANDIDATES = 5000
FEW_RESULTS = 3


async def insert_click(
    connection: asyncpg.Connection, search_id: str, session_id: str | None, item_id: int, position: int
) -> None:
    await connection.execute(
        "INSERT INTO search_clicks (search_id, session_id, item_id, position) VALUES ($1, $2, $3, $4)",
        search_id,
        session_id,
        item_id,
        position,
    )


def _midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), dt.UTC)


# Per day and distinct search, from the raw log: the same figures a rollup row holds.
_RAW_DAILY = f"""
    SELECT (e.at AT TIME ZONE 'UTC')::date AS day, e.kind, e.query, e.terms,
           e.parsed || e.given AS filters,
           count(*) AS searches,
           count(*) FILTER (WHERE e.results = 0) AS no_results,
           count(*) FILTER (WHERE e.results BETWEEN 1 AND {FEW_RESULTS}) AS few_results,
           max(e.results) AS most_results,
           count(c.search_id) AS clicked_searches,
           coalesce(sum(c.clicks), 0) AS clicks,
           coalesce(sum(c.position_sum), 0) AS position_sum
    FROM search_events e
    LEFT JOIN (
        SELECT search_id, count(*) AS clicks, sum(position) AS position_sum
        FROM search_clicks WHERE at >= $1 GROUP BY search_id
    ) c ON c.search_id = e.search_id
    WHERE e.page_offset = 0 AND e.at >= $1 AND e.at < $2
    GROUP BY 1, 2, 3, 4, 5
"""


async def roll_up(connection: asyncpg.Connection, since: dt.date, until: dt.date) -> int:
    """Recompute the rollups of the days from ``since`` up to (not including) ``until`` from the
    raw log; the number of rows written. Clicks count on the day of their search."""
    async with connection.transaction():
        await connection.execute("DELETE FROM search_daily WHERE day >= $1 AND day < $2", since, until)
        status: str = await connection.execute(
            f"""INSERT INTO search_daily (day, kind, query, terms, filters, searches, no_results,
                    few_results, most_results, clicked_searches, clicks, position_sum)
                {_RAW_DAILY}""",
            _midnight(since),
            _midnight(until),
        )
    return int(status.split()[-1])


async def rolled_up_to(connection: asyncpg.Connection) -> dt.date | None:
    """The newest day with rollups (itself possibly partial: it is rolled up again next time)."""
    day: dt.date | None = await connection.fetchval("SELECT max(day) FROM search_daily")
    return day


@dataclass(frozen=True)
class Period:
    """Whole UTC days from ``since`` up to (not including) ``until``."""

    since: dt.date
    until: dt.date

    @classmethod
    def last(cls, days: int, today: dt.date | None = None) -> Period:
        end = (today or dt.datetime.now(dt.UTC).date()) + dt.timedelta(days=1)
        return cls(end - dt.timedelta(days=days), end)

    def before(self) -> Period:
        """The period of the same length just before this one (for trends)."""
        return Period(self.since - (self.until - self.since), self.since)


async def _daily(
    connection: asyncpg.Connection, period: Period, select: str, tail: str
) -> list[asyncpg.Record]:
    """Run ``SELECT {select} FROM daily {tail}`` where ``daily`` is the period's rows, rolled-up
    and raw as the module says; ``$3`` onwards are free for the caller's tail (none here)."""
    upto = await rolled_up_to(connection)
    raw_from = max(period.since, upto) if upto is not None else period.since
    query = f"""
        WITH raw AS ({_RAW_DAILY}),
        daily AS (
            SELECT day, kind, query, terms, filters, searches, no_results, few_results, most_results,
                   clicked_searches, clicks, position_sum
            FROM search_daily WHERE day >= $3 AND day < $4
            UNION ALL
            SELECT * FROM raw
        )
        SELECT {select} FROM daily {tail}"""
    rollups_until = min(raw_from, period.until)
    return list(
        await connection.fetch(query, _midnight(raw_from), _midnight(period.until), period.since, rollups_until)
    )


@dataclass(frozen=True)
class QueryFigures:
    """What shoppers did with one query over a period."""

    query: str
    searches: int
    no_results: int
    few_results: int
    clicked_searches: int
    clicks: int
    position_sum: int

    @property
    def click_through(self) -> float:
        """The share of searches in which a shopper opened at least one result."""
        return self.clicked_searches / self.searches if self.searches else 0.0

    @property
    def mean_position(self) -> float | None:
        """The mean place of the results opened, 1 for the first; None without clicks."""
        return self.position_sum / self.clicks + 1 if self.clicks else None


_PER_QUERY = """query, sum(searches)::bigint AS searches, sum(no_results)::bigint AS no_results,
    sum(few_results)::bigint AS few_results, sum(clicked_searches)::bigint AS clicked_searches,
    sum(clicks)::bigint AS clicks, sum(position_sum)::bigint AS position_sum"""


def _figures(rows: list[asyncpg.Record]) -> list[QueryFigures]:
    return [QueryFigures(**dict(r)) for r in rows]


async def per_query(
    connection: asyncpg.Connection, period: Period, order: str, having: str = "true", limit: int = SHOWN
) -> list[QueryFigures]:
    """Typed queries (not browsing or photos) over ``period``, ``order``ed, those ``having`` only."""
    rows = await _daily(
        connection,
        period,
        _PER_QUERY,
        f"WHERE kind = 'text' GROUP BY query HAVING {having} ORDER BY {order}, query LIMIT {int(limit)}",
    )
    return _figures(rows)


async def top_searches(connection: asyncpg.Connection, period: Period) -> list[QueryFigures]:
    return await per_query(connection, period, "sum(searches) DESC")


async def no_result_searches(connection: asyncpg.Connection, period: Period) -> list[QueryFigures]:
    return await per_query(connection, period, "sum(no_results) DESC", "sum(no_results) > 0")


async def few_result_searches(connection: asyncpg.Connection, period: Period) -> list[QueryFigures]:
    return await per_query(connection, period, "sum(few_results) DESC", "sum(few_results) > 0")


async def never_clicked(connection: asyncpg.Connection, period: Period) -> list[QueryFigures]:
    """Queries that found something and whose results nobody opened, most searched first."""
    return await per_query(
        connection, period, "sum(searches) DESC", "sum(clicks) = 0 AND sum(searches) > sum(no_results)"
    )


async def clicked_queries(connection: asyncpg.Connection, period: Period) -> list[QueryFigures]:
    """Click-through per query, most searched first."""
    return await per_query(connection, period, "sum(searches) DESC", "sum(clicks) > 0")


@dataclass(frozen=True)
class Trend:
    query: str
    searches: int
    before: int

    @property
    def change(self) -> int:
        return self.searches - self.before


async def trending(connection: asyncpg.Connection, period: Period, limit: int = SHOWN) -> list[Trend]:
    """Queries searched more in ``period`` than in the period before, by how many more."""
    now = {f.query: f.searches for f in await per_query(connection, period, "sum(searches) DESC", limit=1000)}
    if not now:
        return []
    before_rows = await _daily(
        connection,
        period.before(),
        "query, sum(searches)::bigint AS searches",
        "WHERE kind = 'text' GROUP BY query",
    )
    before = {r["query"]: r["searches"] for r in before_rows}
    trends = [Trend(q, n, before.get(q, 0)) for q, n in now.items() if n > before.get(q, 0)]
    trends.sort(key=lambda t: (-t.change, -t.searches, t.query))
    return trends[:limit]


@dataclass(frozen=True)
class Unmet:
    """One distinct unmet search: its words and filters, and how it fared over the period."""

    kind: str
    terms: str
    filters: dict[str, str]
    searches: int
    no_results: int
    most_results: int


async def unmet_searches(connection: asyncpg.Connection, period: Period) -> list[Unmet]:
    """Searches (typed or browsing) that found at most FEW_RESULTS items, most frequent first."""
    rows = await _daily(
        connection,
        period,
        """kind, terms, filters, sum(searches)::bigint AS searches, sum(no_results)::bigint AS no_results,
           max(most_results) AS most_results""",
        f"""WHERE kind IN ('text', 'browse') GROUP BY kind, terms, filters
            HAVING max(most_results) <= {FEW_RESULTS}
            ORDER BY sum(searches) DESC LIMIT {GAP_CANDIDATES}""",
    )
    return [
        Unmet(
            r["kind"], r["terms"], _as_filters(r["filters"]), r["searches"], r["no_results"], r["most_results"]
        )
        for r in rows
    ]


def _as_filters(value: Any) -> dict[str, str]:
    loaded = orjson.loads(value) if isinstance(value, str | bytes) else value
    return {str(k): str(v) for k, v in (loaded or {}).items()}


@dataclass(frozen=True)
class Totals:
    searches: int
    photo_searches: int
    no_results: int
    clicked_searches: int


async def totals(connection: asyncpg.Connection, period: Period) -> Totals:
    rows = await _daily(
        connection,
        period,
        """coalesce(sum(searches), 0)::bigint AS searches,
           coalesce(sum(searches) FILTER (WHERE kind = 'photo'), 0)::bigint AS photo_searches,
           coalesce(sum(no_results), 0)::bigint AS no_results,
           coalesce(sum(clicked_searches), 0)::bigint AS clicked_searches""",
        "",
    )
    return Totals(**dict(rows[0]))
