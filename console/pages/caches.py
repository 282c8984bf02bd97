"""Caches: hit rate over time for the embedding cache and the result cache, hits and misses."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, html

from console import data, figures
from console import layout as ui
from console.state import state

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/caches", name="Caches", title="Caches - Prethrift console", order=1
)


def layout(**_: object) -> html.Div:
    return ui.page("Caches", html.Div(id="caches-body", children=ui.empty_state("Loading...")))


@callback(
    Output("caches-body", "children"),
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
    points = console.database.run(data.cache_series, window)
    if not points:
        return ui.empty_state()
    stats = []
    for cache in sorted({p.cache for p in points}):
        hits = sum(p.hits for p in points if p.cache == cache)
        misses = sum(p.misses for p in points if p.cache == cache)
        rate = f"{100 * hits / (hits + misses):.0f}%" if hits + misses else "-"
        stats.append(ui.stat(f"{cache} cache hit rate", rate, f"{hits:,} hits, {misses:,} misses"))
    return [
        html.Div(stats),
        html.H4("Hit rate"),
        ui.graph("caches-hit-rate", figures.cache_hit_rate(points, window)),
        html.H4("Hits and misses"),
        ui.graph("caches-counts", figures.cache_counts(points, window)),
    ]
