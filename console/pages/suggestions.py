"""Suggestions: the queries learned from shoppers' searches, and removing one for good.

Removing and unblocking call the suggestion repository's functions, as `prethrift suggestions
remove/unblock` does, so the page and the CLI block a query the same way.
"""

from __future__ import annotations

from typing import Any

import dash
from dash import ALL, Input, Output, State, callback, ctx, dcc, html
from dash.exceptions import PreventUpdate

from console import data
from console import layout as ui
from console.state import state

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/suggestions", name="Suggestions", title="Suggestions - Prethrift console", order=4
)

REMOVE = "suggestion-remove"
UNBLOCK = "suggestion-unblock"


def layout(**_: object) -> html.Div:
    return ui.page(
        "Suggestions",
        html.P(
            "Queries shoppers ran, most clients first; those run by enough different clients within the "
            "retention are suggested while shoppers type. Removing one also blocks it from being learned "
            "again, until it is unblocked. Answers held by a running API expire within seconds.",
            style={"color": ui.MUTED},
        ),
        dcc.Input(
            id="suggestions-prefix",
            type="search",
            placeholder="Filter: queries starting with...",
            debounce=True,
            maxLength=200,
            style={"width": "320px", "padding": "6px"},
        ),
        html.Div(id="suggestions-message", role="status", style={"margin": "8px 0", "minHeight": "20px"}),
        # Bumped by every action so the lists are read again.
        dcc.Store(id="suggestions-changed", data=0),
        html.Div(id="suggestions-body", children=ui.empty_state("Loading...")),
    )


def _button(kind: str, query: str, label: str) -> html.Button:
    return html.Button(label, id={"type": kind, "query": query}, n_clicks=0, className=kind)


@callback(
    Output("suggestions-body", "children"),
    Input("suggestions-prefix", "value"),
    Input("stack", "value"),
    Input("refresh", "n_intervals"),
    Input("suggestions-changed", "data"),
)
def update(prefix: str | None, stack: str, _: int | None, __: int | None) -> Any:
    console = state()
    if data.scope_message(console.config.own_stack, stack):
        return ui.empty_state(
            f"This console moderates the suggestions of stack '{console.config.own_stack}'; those of "
            f"stack '{stack}' are in that stack's own console."
        )
    learned = console.database.run(data.learned_suggestions, prefix or "")
    blocked = console.database.run(data.blocked_suggestions)
    if learned:
        rows = [
            (
                q.query,
                q.clients,
                q.count,
                q.last_seen.strftime("%Y-%m-%d %H:%M"),
                _button(REMOVE, q.query, "Remove"),
            )
            for q in learned
        ]
        learned_part: Any = ui.table(
            ("query", "distinct clients", "searches", "last seen (UTC)", ""), rows, "suggestions-learned"
        )
    elif prefix and prefix.strip():
        learned_part = ui.empty_state(f"No learned query starts with {prefix.strip()!r}.")
    else:
        learned_part = ui.empty_state("No queries learned yet: they appear once shoppers search.")
    blocked_part = (
        ui.table(
            ("query", "blocked since (UTC)", ""),
            [
                (query, at.strftime("%Y-%m-%d %H:%M"), _button(UNBLOCK, query, "Unblock"))
                for query, at in blocked
            ],
            "suggestions-blocked",
        )
        if blocked
        else html.Div("No query is blocked.", id="suggestions-blocked", style={"color": ui.MUTED})
    )
    shown = f" (the first {data.SUGGESTIONS_SHOWN}; filter to find others)"
    return [
        html.H4("Learned queries" + (shown if len(learned) == data.SUGGESTIONS_SHOWN else "")),
        learned_part,
        html.H4("Blocked (removed) queries" + (shown if len(blocked) == data.SUGGESTIONS_SHOWN else "")),
        blocked_part,
    ]


@callback(
    Output("suggestions-message", "children"),
    Output("suggestions-changed", "data"),
    Input({"type": REMOVE, "query": ALL}, "n_clicks"),
    Input({"type": UNBLOCK, "query": ALL}, "n_clicks"),
    State("suggestions-changed", "data"),
    State("stack", "value"),
    prevent_initial_call=True,
)
def act(_: list[int | None], __: list[int | None], changed: int | None, stack: str) -> tuple[str, int]:
    # Re-rendered lists add buttons, which fire this callback unclicked: only a click acts.
    clicked = next((ctx.triggered_prop_ids[t["prop_id"]] for t in ctx.triggered if t["value"]), None)
    if not isinstance(clicked, dict):
        raise PreventUpdate
    console = state()
    if data.scope_message(console.config.own_stack, stack):
        raise PreventUpdate
    query = data.suggestion_text(clicked.get("query"))
    if query is None:
        return "That is not a query that can be recorded; nothing changed.", changed or 0
    if clicked.get("type") == REMOVE:
        was_recorded = console.database.run(data.remove_suggestion, query)
        message = (
            f"{query!r}: removed and blocked." if was_recorded else f"{query!r}: was not recorded; blocked."
        )
    elif clicked.get("type") == UNBLOCK:
        was_blocked = console.database.run(data.unblock_suggestion, query)
        message = f"{query!r}: unblocked." if was_blocked else f"{query!r} was not blocked."
    else:
        raise PreventUpdate
    return message, (changed or 0) + 1
