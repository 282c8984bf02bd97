"""Cost: projected monthly cost per stack by service (the plan recorded at deploy time), cost
per thousand searches at the observed traffic, and actual spend from Cost Explorer when
connected."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, html

from console import data, figures
from console import layout as ui
from console.cost import PlanMissing
from console.state import state

dash.register_page(  # type: ignore[no-untyped-call]
    __name__, path="/cost", name="Cost", title="Cost - Prethrift console", order=2
)


def layout(**_: object) -> html.Div:
    return ui.page("Cost", html.Div(id="cost-body", children=ui.empty_state("Planning the stack...")))


@callback(
    Output("cost-body", "children"),
    Input("range", "value"),
    Input("stack", "value"),
    Input("refresh", "n_intervals"),
)
def update(range_key: str, stack: str, _: int | None) -> Any:
    console = state()
    try:
        plan = console.plans.plan(stack)
    except PlanMissing as missing:
        return [html.H4(f"Projected monthly cost, stack {stack}"), ui.empty_state(str(missing))]
    window = data.time_range(range_key)
    traffic_here = data.scope_message(console.config.own_stack, stack) is None
    volumes = console.database.run(data.search_volume, window) if traffic_here else []
    searches = sum(v.searches for v in volumes)
    per_thousand = data.cost_per_thousand(plan.total, searches, window.seconds)
    spend = console.spend.spend(stack)
    note = f"{searches:,} searches in range" if traffic_here else "traffic is in this stack's own console"
    parts: list[Any] = [
        html.Div(
            [
                ui.stat(f"Projected monthly ({stack})", ui.usd(plan.total), f"prices as of {plan.as_of}"),
                ui.stat("At max autoscale", ui.usd(plan.max_total), "every service at its maximum"),
                ui.stat("Per 1,000 searches", ui.usd(per_thousand), note),
                ui.stat(
                    "Actual, month to date",
                    ui.usd(spend.total_usd) if spend.connected else "not connected",
                    "AWS Cost Explorer",
                ),
            ]
        ),
        html.H4(f"Projected monthly cost by service, stack {stack}"),
        ui.graph("cost-by-service", figures.cost_by_service(plan)),
        html.Div(
            (
                f"From Pulumi.{stack}.yaml by the offline plan (`prethrift plan {stack}`); {plan.source}."
                if console.plans.offline
                else f"The plan recorded by the last deploy ({console.plans.location(stack)}); {plan.source}."
            ),
            style={"color": ui.MUTED, "fontSize": "13px"},
        ),
        html.H4("Cost per 1,000 searches at the observed search rate"),
    ]
    if per_thousand is None:
        parts.append(ui.empty_state(ui.NO_TRAFFIC if traffic_here else note))
    else:
        parts.append(
            ui.graph("cost-per-thousand", figures.cost_per_thousand_over_time(volumes, plan.total, window))
        )
    parts.append(html.H4("Actual spend"))
    if spend.connected and spend.by_service:
        parts.append(ui.graph("cost-actual", figures.spend_by_service(spend.by_service)))
    parts.append(
        html.Div(
            spend.message,
            id="cost-actual-state",
            className="empty-state" if not spend.connected else "",
            style=ui.STYLE_EMPTY if not spend.connected else {"color": ui.MUTED},
        )
    )
    return parts
