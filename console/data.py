"""What the console shows, read from the metrics store: typed async functions, no Dash.

Each function takes a connection and a :class:`TimeRange` and returns dataclasses; the page
callbacks turn those into figures. Histograms are merged in SQL (``metrics_sum_buckets``
adds counts bucket by bucket) and percentiles read from the merged histogram, so replicas
and minutes combine correctly.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from webapp.embedding import jobs, model_keys
from webapp.observability.metrics_store import percentile
from webapp.suggest import repo as suggest_repo

# Time-range choices: (label, length, chart step). Steps keep a chart under ~100 points.
RANGES: dict[str, tuple[str, timedelta, timedelta]] = {
    "15m": ("Last 15 minutes", timedelta(minutes=15), timedelta(minutes=1)),
    "1h": ("Last hour", timedelta(hours=1), timedelta(minutes=1)),
    "6h": ("Last 6 hours", timedelta(hours=6), timedelta(minutes=5)),
    "24h": ("Last 24 hours", timedelta(hours=24), timedelta(minutes=15)),
    "7d": ("Last 7 days", timedelta(days=7), timedelta(hours=2)),
}
DEFAULT_RANGE = "1h"
ALL_ROUTES = "__all__"
SECONDS_PER_MONTH = 730 * 3600  # the cost model's month (infra/pricing.py HOURS_PER_MONTH)


@dataclass(frozen=True)
class TimeRange:
    since: datetime
    until: datetime
    step: timedelta

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()


def time_range(key: str, now: datetime | None = None) -> TimeRange:
    """The range for a selector value; the current minute is included (it fills as flushes arrive)."""
    _, length, step = RANGES.get(key, RANGES[DEFAULT_RANGE])
    now = now or datetime.now(UTC)
    until = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return TimeRange(until - length, until, step)


def is_search_route(route: str) -> bool:
    """Routes that answer a search (text, photo, similar items), as recorded: ``"GET /api/search"``."""
    path = route.partition(" ")[2]
    return path.startswith("/api/search") or path.endswith("/similar")


@dataclass(frozen=True)
class LatencyPoint:
    t: datetime
    requests: int
    errors: int
    rejected: int
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    seconds: float  # the step, for rates

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class RouteSummary:
    route: str
    requests: int
    errors: int
    rejected: int
    mean_ms: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def _quantiles(buckets: list[int], max_ms: float) -> tuple[float | None, float | None, float | None]:
    return (
        percentile(buckets, 0.50, max_ms),
        percentile(buckets, 0.95, max_ms),
        percentile(buckets, 0.99, max_ms),
    )


async def latency_series(
    connection: asyncpg.Connection, window: TimeRange, route: str | None = None
) -> list[LatencyPoint]:
    """Requests, errors and p50/p95/p99 per step, for one route or (None) all routes together."""
    rows = await connection.fetch(
        """SELECT date_bin($3::interval, minute, TIMESTAMPTZ 'epoch') AS t,
                  sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
                  sum(rejected)::bigint AS rejected, max(max_ms) AS max_ms,
                  metrics_sum_buckets(buckets) AS buckets
           FROM metrics_requests
           WHERE minute >= $1 AND minute < $2 AND ($4::text IS NULL OR route = $4)
           GROUP BY 1 ORDER BY 1""",
        window.since,
        window.until,
        window.step,
        route,
    )
    step = window.step.total_seconds()
    return [
        LatencyPoint(
            r["t"],
            r["requests"],
            r["errors"],
            r["rejected"],
            *_quantiles(list(r["buckets"]), r["max_ms"]),
            step,
        )
        for r in rows
    ]


async def route_summaries(connection: asyncpg.Connection, window: TimeRange) -> list[RouteSummary]:
    """One line per route over the whole range, busiest first."""
    rows = await connection.fetch(
        """SELECT route, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
                  sum(rejected)::bigint AS rejected, sum(total_ms) AS total_ms, max(max_ms) AS max_ms,
                  metrics_sum_buckets(buckets) AS buckets
           FROM metrics_requests WHERE minute >= $1 AND minute < $2
           GROUP BY route ORDER BY 2 DESC, route""",
        window.since,
        window.until,
    )
    return [
        RouteSummary(
            r["route"],
            r["requests"],
            r["errors"],
            r["rejected"],
            r["total_ms"] / r["requests"] if r["requests"] else 0.0,
            *_quantiles(list(r["buckets"]), r["max_ms"]),
        )
        for r in rows
    ]


@dataclass(frozen=True)
class CachePoint:
    t: datetime
    cache: str
    hits: int
    misses: int

    @property
    def hit_rate(self) -> float | None:
        total = self.hits + self.misses
        return self.hits / total if total else None


async def cache_series(connection: asyncpg.Connection, window: TimeRange) -> list[CachePoint]:
    """Hits and misses per cache (``embedding``, ``result``) per step."""
    rows = await connection.fetch(
        """SELECT date_bin($3::interval, minute, TIMESTAMPTZ 'epoch') AS t, cache,
                  sum(hits)::bigint AS hits, sum(misses)::bigint AS misses
           FROM metrics_cache WHERE minute >= $1 AND minute < $2
           GROUP BY 1, 2 ORDER BY 1, 2""",
        window.since,
        window.until,
        window.step,
    )
    return [CachePoint(r["t"], r["cache"], r["hits"], r["misses"]) for r in rows]


@dataclass(frozen=True)
class IngestPoint:
    t: datetime
    embedded: int
    retried: int
    failed: int
    queue_depth: int | None
    seconds: float

    @property
    def embedded_per_minute(self) -> float:
        return self.embedded * 60 / self.seconds


async def ingest_series(connection: asyncpg.Connection, window: TimeRange) -> list[IngestPoint]:
    """Embeddings, failed attempts and the largest queue depth per step (queue depth is global,
    so replicas' readings combine by max, counts by sum)."""
    rows = await connection.fetch(
        """SELECT date_bin($3::interval, minute, TIMESTAMPTZ 'epoch') AS t,
                  sum(embedded)::bigint AS embedded, sum(retried)::bigint AS retried,
                  sum(failed)::bigint AS failed, max(queue_depth) AS queue_depth
           FROM metrics_ingest WHERE minute >= $1 AND minute < $2
           GROUP BY 1 ORDER BY 1""",
        window.since,
        window.until,
        window.step,
    )
    step = window.step.total_seconds()
    return [IngestPoint(r["t"], r["embedded"], r["retried"], r["failed"], r["queue_depth"], step) for r in rows]


# The embedding queue and the model registry are read through their own repository modules.
Failure = jobs.Failure
recent_failures = jobs.recent_failures


async def current_queue_depth(connection: asyncpg.Connection) -> int:
    return await jobs.queue_depth(connection)


async def model_coverage(connection: asyncpg.Connection) -> list[model_keys.ModelInfo]:
    """Each model key's coverage, state and embeddings written in the last five minutes."""
    return await model_keys.list_models(connection)


@dataclass(frozen=True)
class SearchVolume:
    t: datetime
    searches: int
    seconds: float


async def search_volume(connection: asyncpg.Connection, window: TimeRange) -> list[SearchVolume]:
    """Searches answered per step (every search route, any status)."""
    rows = await connection.fetch(
        """SELECT date_bin($3::interval, minute, TIMESTAMPTZ 'epoch') AS t, route, sum(requests)::bigint AS n
           FROM metrics_requests WHERE minute >= $1 AND minute < $2
           GROUP BY 1, 2 ORDER BY 1""",
        window.since,
        window.until,
        window.step,
    )
    totals: dict[datetime, int] = {}
    for r in rows:
        if is_search_route(r["route"]):
            totals[r["t"]] = totals.get(r["t"], 0) + r["n"]
    step = window.step.total_seconds()
    return [SearchVolume(t, n, step) for t, n in sorted(totals.items())]


def cost_per_thousand(monthly_usd: float, searches: int, seconds: float) -> float | None:
    """What a thousand searches cost if the platform ran a month at the observed search rate."""
    if searches <= 0 or seconds <= 0:
        return None
    monthly_searches = searches / seconds * SECONDS_PER_MONTH
    return monthly_usd / monthly_searches * 1000


def scope_message(own_stack: str, selected: str) -> str | None:
    """Why traffic pages show nothing for a stack, or None when they show this database's data.

    A console reads the metrics database of the deployment it runs in (``own_stack``); in local
    development (``local``) that database stands in for whichever stack is selected.
    """
    if own_stack == "local" or selected == own_stack:
        return None
    return (
        f"This console reads the metrics of stack '{own_stack}'. Traffic of stack '{selected}' "
        f"is in that stack's own console; its costs are on the Cost page."
    )


# Learned suggestions are read and moderated through the suggestion repository, the same
# functions (and SQL) as `prethrift suggestions list/remove/unblock`.
LearnedQuery = suggest_repo.LearnedQuery
remove_suggestion = suggest_repo.remove_query
unblock_suggestion = suggest_repo.unblock_query
# Rows the Suggestions page lists at most, per list: a filter narrows a long list.
SUGGESTIONS_SHOWN = 100


# The query an action or filter names, or None when no recorded query could have that text.
suggestion_text = suggest_repo.recordable_query


async def learned_suggestions(
    connection: asyncpg.Connection, prefix: str = "", limit: int = SUGGESTIONS_SHOWN
) -> list[suggest_repo.LearnedQuery]:
    """Recorded queries starting with ``prefix`` (any text), most clients first."""
    if not prefix.strip():
        return await suggest_repo.learned_queries(connection, "", limit)
    query = suggestion_text(prefix)
    if query is None:
        return []
    return await suggest_repo.learned_queries(connection, query, limit)


async def blocked_suggestions(
    connection: asyncpg.Connection, limit: int = SUGGESTIONS_SHOWN
) -> list[tuple[str, datetime]]:
    """Queries an operator removed (never learned again), alphabetically."""
    return await suggest_repo.blocked_queries(connection, limit)
