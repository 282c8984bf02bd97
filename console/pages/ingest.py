"""Ingest: each model key's coverage and backfill rate, queue depth, embeddings per minute,
failures and their reasons."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, html

from console import data, figures
from console import layout as ui
from console.state import state

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/ingest", name="Ingest", title="Ingest - Prethrift console", order=3
)


def layout(**_: object) -> html.Div:
    return ui.page("Ingest", html.Div(id="ingest-body", children=ui.empty_state("Loading...")))


@callback(
    Output("ingest-body", "children"),
    Input("range", "value"),
    Input("stack", "value"),
    Input("refresh", "n_intervals"),
)
def update(range_key: str, stack: str, _: int | None) -> Any:
    console = state()
    message = data.scope_message(console.config.own_stack, stack)
    if message:
        return ui.empty_state(message)
    window = data.time_range(range_key)
    points = console.database.run(data.ingest_series, window)
    depth = console.database.run(data.current_queue_depth)
    failures = console.database.run(data.recent_failures)
    models = console.database.run(data.model_coverage)
    header = html.Div(
        [
            ui.stat("Queue depth now", f"{depth:,}", "embedding jobs waiting"),
            ui.stat("Embedded in range", f"{sum(p.embedded for p in points):,}", "items"),
            ui.stat(
                "Failed attempts in range",
                f"{sum(p.failed + p.retried for p in points):,}",
                "retried or given up",
            ),
        ]
    )
    if not points:
        body: list[Any] = [
            ui.empty_state("No ingest activity yet in this time range: upload items to see them here.")
        ]
    else:
        body = [
            html.H4("Queue depth"),
            ui.graph("ingest-queue", figures.queue_depth(points, window)),
            html.H4("Embeddings and failures per minute"),
            ui.graph("ingest-rate", figures.embeddings(points, window)),
        ]
    rows = [
        (f.at.strftime("%Y-%m-%d %H:%M:%S"), f.item_id, f.title, f.status, f.attempts, f.reason)
        for f in failures
    ]
    failures_part = (
        ui.table(("when (UTC)", "item", "title", "status", "attempts", "reason"), rows, "ingest-failures")
        if rows
        else html.Div("No failed embeddings.", style={"color": ui.MUTED})
    )
    model_rows = [
        (
            m.model_key,
            m.state,
            f"{m.coverage:.1%}",
            f"{m.embedded:,} of {m.total:,}",
            f"{m.embedded_last_5m / 5:,.1f}",
            m.workers,
        )
        for m in models
    ]
    models_part = (
        ui.table(
            (
                "model key",
                "state",
                "coverage",
                "items embedded",
                "backfill rate (items/min, last 5 min)",
                "workers",
            ),
            model_rows,
            "ingest-models",
        )
        if model_rows
        else html.Div("No model key registered yet.", style={"color": ui.MUTED})
    )
    return [header, html.H4("Model keys"), models_part, *body, html.H4("Recent failures"), failures_part]
