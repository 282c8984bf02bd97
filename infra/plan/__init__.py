"""The offline plan: every resource of a stack with its key settings and projected monthly cost,
and the cost difference against another git revision.

- rows.py: the row model (PlanRow, StackPlan, Cost) and the JSON the deploy records;
- context.py, rules.py: the price rules, one per priced resource type (PRICE_RULES);
- usage.py: rows that follow usage assumptions rather than a resource;
- price.py: a stack's mock record to its rows;
- compare.py: the plan at another git revision and the difference;
- report.py: the text; cli.py: `python -m infra.plan` / `prethrift plan`.
"""

from infra.plan.cli import main
from infra.plan.compare import CostDiff, compare_plans, plan_at_ref
from infra.plan.price import plan_stack, price_resources
from infra.plan.report import format_diff, format_plan
from infra.plan.rows import Cost, PlanRow, StackPlan

__all__ = [
    "Cost",
    "CostDiff",
    "PlanRow",
    "StackPlan",
    "compare_plans",
    "format_diff",
    "format_plan",
    "main",
    "plan_at_ref",
    "plan_stack",
    "price_resources",
]
