"""Layout builders: the shell around every page, page bodies, empty states, tables, graphs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dash
import plotly.graph_objects as go
from dash import dcc, html
from dash.development.base_component import Component

from console.data import DEFAULT_RANGE, RANGES

FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
MUTED = "#5f6b7a"
STYLE_PAGE = {"fontFamily": FONT, "margin": "0 auto", "maxWidth": "1200px", "padding": "0 24px 48px"}
STYLE_CARD = {"border": "1px solid #e3e7ec", "borderRadius": "8px", "padding": "12px 16px", "margin": "12px 0"}
STYLE_EMPTY = {**STYLE_CARD, "color": MUTED, "background": "#f8fafc", "textAlign": "center", "padding": "32px"}

NO_TRAFFIC = (
    "No traffic yet in this time range. Make a few searches (for example "
    "`curl 'http://127.0.0.1:8000/api/search?q=red+dress'`); charts fill within a minute."
)


def shell(stacks: Sequence[str], default_stack: str, own_stack: str, refresh_s: float) -> html.Div:
    """Navigation, the stack and time-range selectors, auto-refresh, and the page container."""
    links = [
        dcc.Link(page["name"], href=page["relative_path"], style={"marginRight": "18px"})
        for page in dash.page_registry.values()
    ]
    source = "local development" if own_stack == "local" else f"stack {own_stack}"
    return html.Div(
        style=STYLE_PAGE,
        children=[
            html.Header(
                style={
                    "display": "flex",
                    "alignItems": "center",
                    "gap": "24px",
                    "flexWrap": "wrap",
                    "borderBottom": "1px solid #e3e7ec",
                    "padding": "12px 0",
                },
                children=[
                    html.Strong("Prethrift console", style={"fontSize": "18px"}),
                    html.Nav(links),
                    html.Div(style={"flex": "1"}),
                    html.Label(
                        [
                            "Stack ",
                            dcc.Dropdown(
                                id="stack",
                                options=list(stacks),
                                value=default_stack,
                                clearable=False,
                                style={"width": "140px", "display": "inline-block", "verticalAlign": "middle"},
                            ),
                        ]
                    ),
                    html.Label(
                        [
                            "Range ",
                            dcc.Dropdown(
                                id="range",
                                options=[
                                    {"label": label, "value": key} for key, (label, _, _) in RANGES.items()
                                ],
                                value=DEFAULT_RANGE,
                                clearable=False,
                                style={"width": "170px", "display": "inline-block", "verticalAlign": "middle"},
                            ),
                        ]
                    ),
                    dcc.Checklist(
                        id="auto-refresh", options=[{"label": " auto-refresh", "value": "on"}], value=["on"]
                    ),
                ],
            ),
            html.Div(f"Metrics from {source}.", style={"color": MUTED, "fontSize": "13px", "marginTop": "6px"}),
            dcc.Interval(id="refresh", interval=int(refresh_s * 1000)),
            dash.page_container,
        ],
    )


def page(title: str, *children: Any) -> html.Div:
    return html.Div([html.H2(title, style={"fontWeight": 600}), *children])


def empty_state(message: str = NO_TRAFFIC) -> html.Div:
    return html.Div(message, className="empty-state", style=STYLE_EMPTY)


def graph(graph_id: str, figure: go.Figure) -> dcc.Graph:
    return dcc.Graph(id=graph_id, figure=figure, className="chart", config={"displaylogo": False})


def stat(label: str, value: str, note: str = "") -> html.Div:
    return html.Div(
        style={**STYLE_CARD, "display": "inline-block", "minWidth": "200px", "marginRight": "12px"},
        children=[
            html.Div(label, style={"color": MUTED, "fontSize": "13px"}),
            html.Div(value, className="stat-value", style={"fontSize": "24px", "fontWeight": 600}),
            html.Div(note, style={"color": MUTED, "fontSize": "12px"}),
        ],
    )


def table(columns: Sequence[str], rows: Sequence[Sequence[object]], table_id: str) -> html.Table:
    cell = {"padding": "6px 12px", "borderBottom": "1px solid #eef1f4", "textAlign": "left"}
    return html.Table(
        id=table_id,
        style={"borderCollapse": "collapse", "width": "100%", "fontSize": "14px"},
        children=[
            html.Thead(html.Tr([html.Th(c, style={**cell, "color": MUTED}) for c in columns])),
            html.Tbody(
                [
                    html.Tr([html.Td(v if isinstance(v, Component) else str(v), style=cell) for v in row])
                    for row in rows
                ]
            ),
        ],
    )


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def usd(value: float | None) -> str:
    return "-" if value is None else f"${value:,.2f}"
