"""Demand: what shoppers search for, what they do not find, and what they open (the search log)."""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html
from dash.exceptions import PreventUpdate

from console import data
from console import layout as ui
from console.demand import DEFAULT_DAYS, PERIODS, Demand, Table, demand
from console.state import state

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/demand", name="Demand", title="Demand - Prethrift console", order=5
)

CSV = "demand-csv"
EXPLAINED = (
    "Every search the service answers is logged (the words, the filters given and those read from "
    "the words, how many items it found, whether it came from the cache) with a random id that the "
    "shopper's clicks name; nothing that identifies the shopper is kept. Figures count first pages "
    "only, by UTC day; raw searches are kept for a limited time and daily totals for longer "
    "(PRETHRIFT_ANALYTICS_RAW_RETENTION_DAYS, PRETHRIFT_ANALYTICS_ROLLUP_RETENTION_DAYS). The period "
    "is chosen below (the Range above is for the traffic pages)."
)


def layout(**_: object) -> html.Div:
    return ui.page(
        "Demand",
        html.P(EXPLAINED, style={"color": ui.MUTED}),
        dcc.RadioItems(
            id="demand-period",
            options=[{"label": f" {label}", "value": days} for days, label in PERIODS.items()],
            value=DEFAULT_DAYS,
            inline=True,
            inputStyle={"marginLeft": "12px"},
        ),
        dcc.Download(id="demand-download"),
        html.Div(id="demand-body", children=ui.empty_state("Loading...")),
    )


def _read(days: int) -> Demand:
    console = state()
    return console.database.run(demand, days, console.config.search_page_url)


def _table(table: Table) -> html.Section:
    heading = html.Div(
        style={"display": "flex", "alignItems": "baseline", "gap": "16px"},
        children=[
            html.H4(table.title),
            html.Button(
                "Download CSV", id={"type": CSV, "table": table.key}, n_clicks=0, disabled=not table.rows
            ),
        ],
    )
    if not table.rows:
        body: Any = html.Div("Nothing in this period yet.", className="empty-table", style={"color": ui.MUTED})
    else:
        rows = table.rows
        if table.links:
            rows = [
                (html.A(str(row[0]), href=link, target="_blank", rel="noopener"), *row[1:])
                for row, link in zip(rows, table.links, strict=True)
            ]
        body = ui.table(table.columns, rows, f"demand-{table.key}")
    return html.Section(
        id=f"demand-section-{table.key}",
        children=[heading, html.P(table.explanation, style={"color": ui.MUTED, "fontSize": "13px"}), body],
    )


@callback(
    Output("demand-body", "children"),
    Input("demand-period", "value"),
    Input("stack", "value"),
    Input("refresh", "n_intervals"),
)
def update(days: int | None, stack: str, _: int | None) -> Any:
    console = state()
    message = data.scope_message(console.config.own_stack, stack)
    if message:
        return ui.empty_state(message)
    report = _read(days or DEFAULT_DAYS)
    totals = report.totals
    typed = totals.searches - totals.photo_searches
    stats = html.Div(
        [
            ui.stat("Searches", f"{totals.searches:,}", f"{totals.photo_searches:,} by photo"),
            ui.stat(
                "Found nothing",
                f"{100 * totals.no_results / totals.searches:.0f}%" if totals.searches else "-",
                "of searches",
            ),
            ui.stat(
                "Click-through",
                f"{100 * totals.clicked_searches / totals.searches:.0f}%" if totals.searches else "-",
                "searches with a result opened",
            ),
        ],
        id="demand-totals",
    )
    if not totals.searches:
        intro: Any = ui.empty_state(
            "No searches logged in this period yet: they appear here as shoppers search "
            "(for example `curl 'http://127.0.0.1:8000/api/search?q=red+dress'`)."
        )
    else:
        intro = html.Div(f"{typed:,} typed or filter searches, {totals.photo_searches:,} photo searches.")
    return [stats, intro, *(_table(t) for t in report.tables)]


@callback(
    Output("demand-download", "data"),
    Input({"type": CSV, "table": ALL}, "n_clicks"),
    State("demand-period", "value"),
    prevent_initial_call=True,
)
def download(_: list[int | None], days: int | None) -> Any:
    # Re-rendered tables add buttons, which fire this callback unclicked: only a click downloads.
    clicked = next((ctx.triggered_prop_ids[t["prop_id"]] for t in ctx.triggered if t["value"]), None)
    if not isinstance(clicked, dict):
        raise PreventUpdate
    report = _read(days or DEFAULT_DAYS)
    try:
        table = report.table(str(clicked.get("table")))
    except StopIteration:
        raise PreventUpdate from None
    name = f"prethrift-{table.key}-{report.period.since}-to-{report.period.until}.csv"
    # What dcc.send_string builds, written out (it is untyped).
    return {"content": table.csv(), "filename": name, "type": "text/csv", "base64": False}
