"""Plotly figures from the data functions' results (pure: data in, figure out)."""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from console.data import CachePoint, IngestPoint, LatencyPoint, SearchVolume, TimeRange, cost_per_thousand
from infra.plan import StackPlan

COLOURS = {"p50": "#2563eb", "p95": "#f59e0b", "p99": "#dc2626", "embedding": "#7c3aed", "result": "#059669"}


def _base(fig: go.Figure, y_title: str, height: int = 320, window: TimeRange | None = None) -> go.Figure:
    if window is not None:  # the whole selected range, so a few minutes of traffic sit in context
        fig.update_xaxes(range=[window.since, window.until])
        fig.update_traces(width=window.step.total_seconds() * 800, selector={"type": "bar"})
    fig.update_layout(
        height=height,
        margin={"l": 56, "r": 24, "t": 32, "b": 40},
        legend={"orientation": "h", "y": 1.12},
        yaxis_title=y_title,
        template="plotly_white",
        hovermode="x unified",
    )
    return fig


def latency(points: Sequence[LatencyPoint], window: TimeRange | None = None) -> go.Figure:
    fig = go.Figure()
    for name in ("p50", "p95", "p99"):
        ys = [getattr(p, f"{name}_ms") for p in points]
        fig.add_trace(
            go.Scatter(
                x=[p.t for p in points], y=ys, name=name, mode="lines+markers", line={"color": COLOURS[name]}
            )
        )
    return _base(fig, "latency (ms)", window=window)


def throughput(points: Sequence[LatencyPoint], window: TimeRange | None = None) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    xs = [p.t for p in points]
    fig.add_trace(go.Bar(x=xs, y=[p.per_second for p in points], name="requests/s", marker_color="#93c5fd"))
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=[100 * p.error_rate for p in points],
            name="errors (5xx) %",
            mode="lines+markers",
            line={"color": COLOURS["p99"]},
        ),
        secondary_y=True,
    )
    fig.update_yaxes(title_text="error rate (%)", secondary_y=True, rangemode="tozero")
    return _base(fig, "requests/s", window=window)


def cache_hit_rate(points: Sequence[CachePoint], window: TimeRange | None = None) -> go.Figure:
    fig = go.Figure()
    for cache in sorted({p.cache for p in points}):
        mine = [p for p in points if p.cache == cache]
        fig.add_trace(
            go.Scatter(
                x=[p.t for p in mine],
                y=[None if p.hit_rate is None else 100 * p.hit_rate for p in mine],
                name=f"{cache} cache",
                mode="lines+markers",
                line={"color": COLOURS.get(cache)},
            )
        )
    fig.update_yaxes(range=[0, 105])
    return _base(fig, "hit rate (%)", window=window)


def cache_counts(points: Sequence[CachePoint], window: TimeRange | None = None) -> go.Figure:
    fig = go.Figure()
    for cache in sorted({p.cache for p in points}):
        mine = [p for p in points if p.cache == cache]
        xs = [p.t for p in mine]
        colour = COLOURS.get(cache)
        fig.add_trace(go.Scatter(x=xs, y=[p.hits for p in mine], name=f"{cache} hits", line={"color": colour}))
        fig.add_trace(
            go.Scatter(
                x=xs, y=[p.misses for p in mine], name=f"{cache} misses", line={"color": colour, "dash": "dot"}
            )
        )
    fig.update_traces(mode="lines+markers")
    return _base(fig, "look-ups", window=window)


def cost_by_service(plan: StackPlan) -> go.Figure:
    services = [(name, usd) for name, usd in plan.by_service().items() if usd > 0]
    fig = go.Figure(
        go.Bar(
            x=[usd for _, usd in services],
            y=[name for name, _ in services],
            orientation="h",
            text=[f"${usd:,.2f}" for _, usd in services],
            marker_color="#2563eb",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return _base(fig, "", height=300).update_layout(xaxis_title="USD per month")


def cost_per_thousand_over_time(
    volumes: Sequence[SearchVolume], monthly_usd: float, window: TimeRange | None = None
) -> go.Figure:
    points = [(v.t, cost_per_thousand(monthly_usd, v.searches, v.seconds)) for v in volumes]
    fig = go.Figure(
        go.Scatter(
            x=[t for t, _ in points],
            y=[c for _, c in points],
            mode="lines+markers",
            name="USD per 1,000 searches",
            line={"color": "#059669"},
        )
    )
    fig.update_yaxes(type="log")
    return _base(fig, "USD per 1,000 searches", window=window)


def spend_by_service(by_service: dict[str, float]) -> go.Figure:
    fig = go.Figure(
        go.Bar(x=list(by_service.values()), y=list(by_service), orientation="h", marker_color="#f59e0b")
    )
    fig.update_yaxes(autorange="reversed")
    return _base(fig, "", height=300).update_layout(xaxis_title="USD this month")


def queue_depth(points: Sequence[IngestPoint], window: TimeRange | None = None) -> go.Figure:
    measured = [p for p in points if p.queue_depth is not None]
    fig = go.Figure(
        go.Scatter(
            x=[p.t for p in measured],
            y=[p.queue_depth for p in measured],
            mode="lines+markers",
            name="jobs waiting",
            line={"color": "#7c3aed", "shape": "hv"},
        )
    )
    fig.update_yaxes(rangemode="tozero")
    return _base(fig, "jobs waiting", window=window)


def embeddings(points: Sequence[IngestPoint], window: TimeRange | None = None) -> go.Figure:
    xs = [p.t for p in points]
    fig = go.Figure()
    fig.add_trace(
        go.Bar(x=xs, y=[p.embedded_per_minute for p in points], name="embedded / min", marker_color="#059669")
    )
    fig.add_trace(
        go.Bar(
            x=xs, y=[p.retried * 60 / p.seconds for p in points], name="retried / min", marker_color="#f59e0b"
        )
    )
    fig.add_trace(
        go.Bar(x=xs, y=[p.failed * 60 / p.seconds for p in points], name="failed / min", marker_color="#dc2626")
    )
    return _base(fig, "items per minute", window=window).update_layout(barmode="stack")
