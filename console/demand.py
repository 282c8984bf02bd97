"""The Demand page's tables, read from the search log (webapp/analytics): plain rows, no Dash.

Each table is a title, an explanation, columns and rows of plain values; the page draws them
and offers each as CSV. A demand gap's row carries the link that reproduces its search.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

import asyncpg

from webapp.analytics import repo
from webapp.analytics.gaps import demand_gaps

PERIODS = {1: "Today", 7: "Last 7 days", 30: "Last 30 days", 90: "Last 90 days", 365: "Last 365 days"}
DEFAULT_DAYS = 7


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    explanation: str
    columns: tuple[str, ...]
    rows: list[tuple[object, ...]]
    # Per row, the URL that reproduces it (demand gaps only).
    links: list[str] = field(default_factory=list)

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*self.columns, *(["search link"] if self.links else [])])
        for n, row in enumerate(self.rows):
            writer.writerow([*row, *([self.links[n]] if self.links else [])])
        return out.getvalue()


@dataclass(frozen=True)
class Demand:
    period: repo.Period
    totals: repo.Totals
    tables: list[Table]

    def table(self, key: str) -> Table:
        return next(t for t in self.tables if t.key == key)


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


def _mean(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _per_query(
    figures: list[repo.QueryFigures], key: str, title: str, explanation: str, extra: tuple[str, str]
) -> Table:
    """Queries with their searches and one more figure: (column title, QueryFigures attribute)."""
    column, attribute = extra
    rows: list[tuple[object, ...]] = [(f.query, f.searches, getattr(f, attribute)) for f in figures]
    return Table(key, title, explanation, ("query", "searches", column), rows)


async def demand(connection: asyncpg.Connection, days: int, page_url: str) -> Demand:
    """Everything the Demand page shows for the last ``days`` days (today included)."""
    period = repo.Period.last(days)
    clicked = await repo.clicked_queries(connection, period)
    gaps = demand_gaps(await repo.unmet_searches(connection, period))
    tables = [
        _per_query(
            await repo.top_searches(connection, period),
            "top",
            "Top searches",
            "Typed queries by how often shoppers ran them (first pages only; photo searches and "
            "filter-only browsing are not queries).",
            ("found nothing", "no_results"),
        ),
        _per_query(
            await repo.no_result_searches(connection, period),
            "none",
            "Searches with no results",
            "Queries that found nothing, by how many times they did: each is a shopper the catalog "
            "could not answer.",
            ("times it found nothing", "no_results"),
        ),
        _per_query(
            await repo.few_result_searches(connection, period),
            "few",
            "Searches with few results",
            "Queries that found 1 to 3 items, by how many times they did: demand the catalog only just meets.",
            ("times it found 1 to 3", "few_results"),
        ),
        Table(
            "trending",
            "Trending",
            "Queries searched more in this period than in the period of the same length before it, "
            "by how many more times.",
            ("query", "searches", "period before", "change"),
            [(t.query, t.searches, t.before, f"+{t.change}") for t in await repo.trending(connection, period)],
        ),
        Table(
            "clicks",
            "Click-through by query",
            "Click-through: the share of a query's searches in which the shopper opened at least one "
            "result. Mean position: where the opened results were in the list (1 is the first); a "
            "high figure means shoppers scroll past what ranks first.",
            ("query", "searches", "click-through", "clicks", "mean clicked position"),
            [
                (f.query, f.searches, _pct(f.clicked_searches, f.searches), f.clicks, _mean(f.mean_position))
                for f in clicked
            ],
        ),
        Table(
            "never",
            "Searched but never clicked",
            "Queries that found items whose results no shopper opened: the results may not be what "
            "the words asked for.",
            ("query", "searches"),
            [(f.query, f.searches) for f in await repo.never_clicked(connection, period)],
        ),
        Table(
            "gaps",
            "Demand gaps: what to source",
            "Searches that found 3 items or fewer, grouped by what they asked for: brand, category, "
            "size, colour, condition and price band (from the filters given or read from the words), "
            "and the words left over. Items: the most any of them found. Open a row's link to run "
            "that search on the shop's page.",
            ("what shoppers asked for", "searches", "found nothing", "items", "ways asked"),
            [(g.description, g.searches, g.no_results, g.most_results, g.variants) for g in gaps],
            [g.key.link(page_url) for g in gaps],
        ),
    ]
    return Demand(period, await repo.totals(connection, period), tables)
