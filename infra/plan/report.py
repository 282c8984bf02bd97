"""The plan and the cost difference as text, for a terminal and a pull request comment."""

from __future__ import annotations

from infra.plan.compare import CostDiff
from infra.plan.rows import StackPlan


def short_type(typ: str) -> str:
    """`aws:ecs/service:Service` -> `ecs.Service`; usage lines keep their own name."""
    if typ.startswith("usage:"):
        return typ
    package, _, rest = typ.partition(":")
    module, _, name = rest.rpartition(":")
    module = module.split("/")[0]
    return f"{module if module != 'index' else package}.{name}"


def format_plan(plan: StackPlan) -> str:
    header = ("SERVICE", "RESOURCE", "NAME", "KEY SETTINGS", "USD/MONTH", "MAX AUTOSCALE", "NOTE")
    lines = [
        f"Prethrift offline plan for stack '{plan.stack}': {plan.resources} resources "
        f"in {plan.components} components (Pulumi program under mocks)",
        f"Prices: {plan.source}, as of {plan.as_of}; 730 h/month; usage assumptions: "
        + ", ".join(f"{k}={v:g}" for k, v in plan.usage.__dict__.items()),
        "",
    ]
    table = [header] + [
        (
            row.service,
            short_type(row.type),
            row.name,
            " ".join(f"{k}={v}" for k, v in row.settings.items()),
            f"{row.monthly_usd:,.2f}",
            f"{row.at_max:,.2f}",
            row.note,
        )
        for row in sorted(plan.rows, key=lambda r: (r.service, -r.monthly_usd, r.name))
    ]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for line in table:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(line[:4])]
        lines.append("  ".join([*cells, line[4].rjust(10), line[5].rjust(13), line[6]]).rstrip())
    lines.append("")
    lines.append("By service: " + " · ".join(f"{k} {v:,.2f}" for k, v in plan.by_service().items()))
    lines.append(f"TOTAL monthly (USD): {plan.total:,.2f}")
    lines.append(f"MAX AUTOSCALE monthly (USD): {plan.max_total:,.2f} (every service at its maximum all month)")
    return "\n".join(lines)


def format_diff(diff: CostDiff) -> str:
    sign = "+" if diff.delta >= 0 else "-"
    lines = [
        f"Cost difference for stack '{diff.stack}' against {diff.base_ref}: "
        f"{diff.base_total:,.2f} -> {diff.head_total:,.2f} USD/month "
        f"({sign}{abs(diff.delta):,.2f})",
    ]
    for typ, name, before, after in diff.changes:
        what = "added" if (typ, name) in diff.added else "removed" if (typ, name) in diff.removed else "changed"
        lines.append(f"  {what:8} {typ} {name}: {before:,.2f} -> {after:,.2f} ({after - before:+,.2f})")
    if not diff.changes:
        lines.append("  no resource changed cost")
    return "\n".join(lines)
