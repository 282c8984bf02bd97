"""Latency: p50/p95/p99 per route over time, requests per second and error rate."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, dcc, html

from console import data, figures
from console import layout as ui
from console.state import state

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/", name="Latency", title="Latency - Prethrift console", order=0
)

ALL = {"label": "All routes", "value": data.ALL_ROUTES}


def layout(**_: object) -> html.Div:
    return ui.page(
        "Latency",
        dcc.Dropdown(
            id="latency-route", options=[ALL], value=data.ALL_ROUTES, clearable=False, style={"width": "420px"}
        ),
        html.Div(id="latency-body", children=ui.empty_state("Loading...")),
    )


@callback(
    Output("latency-body", "children"),
    Output("latency-route", "options"),
    Input("range", "value"),
    Input("stack", "value"),
    Input("refresh", "n_intervals"),
    Input("latency-route", "value"),
)
def update(range_key: str, stack: str, _: int | None, route: str) -> tuple[Any, list[dict[str, str]]]:
    console = state()
    message = data.scope_message(console.config.own_stack, stack)
    if message:
        return ui.empty_state(message), [ALL]
    window = data.time_range(range_key)
    summaries = console.database.run(data.route_summaries, window)
    options = [ALL, *({"label": s.route, "value": s.route} for s in summaries)]
    points = console.database.run(data.latency_series, window, None if route == data.ALL_ROUTES else route)
    if not points:
        return ui.empty_state(), options
    rows = [
        (
            s.route,
            f"{s.requests:,}",
            f"{s.requests / window.seconds:.3g}",
            ui.ms(s.p50_ms),
            ui.ms(s.p95_ms),
            ui.ms(s.p99_ms),
            f"{100 * s.error_rate:.1f}%",
            f"{s.rejected:,}",
        )
        for s in summaries
    ]
    body = [
        html.H4("Latency percentiles"),
        ui.graph("latency-percentiles", figures.latency(points, window)),
        html.H4("Requests per second and error rate"),
        ui.graph("latency-throughput", figures.throughput(points, window)),
        html.H4("Per route, whole range"),
        ui.table(("route", "requests", "req/s", "p50", "p95", "p99", "5xx", "4xx"), rows, "latency-routes"),
    ]
    return body, options
