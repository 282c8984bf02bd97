"""Price a stack: run the program under mocks, then one row per resource from its price rule
(or as free), plus the usage rows."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from infra import pricing
from infra import resource_types as T
from infra.mocks import REPO_ROOT, record
from infra.plan.context import PriceContext
from infra.plan.rows import Cost, PlanRow, StackPlan, fmt_value, service_of
from infra.plan.rules import PRICE_RULES
from infra.plan.usage import usage_rows

# The settings the plan prints for each resource type.
KEY_SETTINGS: dict[str, tuple[str, ...]] = {
    T.EC2_VPC: ("cidrBlock",),
    T.EC2_SUBNET: ("cidrBlock", "availabilityZone"),
    T.EC2_VPC_ENDPOINT: ("serviceName", "vpcEndpointType"),
    T.ECS_CLUSTER: ("name",),
    T.ECS_SERVICE: ("name", "desiredCount"),
    T.ECS_TASK_DEFINITION: ("family", "cpu", "memory", "requiresCompatibilities"),
    T.RDS_INSTANCE: (
        "instanceClass",
        "engineVersion",
        "allocatedStorage",
        "multiAz",
        "deletionProtection",
        "backupRetentionPeriod",
    ),
    T.ELASTICACHE_REPLICATION_GROUP: (
        "engine",
        "nodeType",
        "numCacheClusters",
        "automaticFailoverEnabled",
    ),
    T.LB_LOAD_BALANCER: ("loadBalancerType", "enableDeletionProtection"),
    T.LB_LISTENER: ("port", "protocol"),
    T.LB_TARGET_GROUP: ("port", "targetType"),
    T.CLOUDWATCH_LOG_GROUP: ("name", "retentionInDays"),
    T.CLOUDWATCH_METRIC_ALARM: ("metricName", "threshold"),
    T.SSM_PARAMETER: ("name", "type"),
    T.APPAUTOSCALING_TARGET: ("minCapacity", "maxCapacity"),
    T.AUTOSCALING_GROUP: ("minSize", "maxSize"),
    T.EC2_LAUNCH_TEMPLATE: ("instanceType",),
    T.ECR_REPOSITORY: ("name", "imageTagMutability"),
    T.CLOUDFRONT_DISTRIBUTION: ("priceClass",),
    T.WAFV2_WEB_ACL: ("scope",),
}


def key_settings(resource: Mapping[str, Any]) -> dict[str, str]:
    inputs = resource["inputs"]
    keys = KEY_SETTINGS.get(resource["type"], ())
    return {key: fmt_value(inputs[key]) for key in keys if inputs.get(key) is not None}


def price_resources(stack: str, rec: Mapping[str, Any]) -> StackPlan:
    """Price a mock record (infra/mocks.py) of one stack."""
    usage = pricing.Usage.from_config(rec["config"].get("prethrift:planUsage"))
    resources = [r for r in rec["resources"] if r["custom"]]
    by_type: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in resources:
        by_type[r["type"]].append(r)
    task_by_arn = {r["state"]["arn"]: r for r in by_type[T.ECS_TASK_DEFINITION]}
    ctx = PriceContext(usage, by_type, task_by_arn)

    rows: list[PlanRow] = []
    for r in resources:
        typ = r["type"]
        rule = PRICE_RULES.get(typ)
        if rule is not None:
            cost = rule(r, ctx)
        elif typ in pricing.FREE_TYPES:
            cost = Cost()
        else:
            cost = Cost(0.0, "no price rule; add one to PRICE_RULES in infra/plan/rules.py")
        rows.append(
            PlanRow(
                typ,
                r["name"],
                service_of(typ),
                key_settings(r),
                round(cost.monthly_usd, 2),
                cost.note,
                None if cost.max_usd is None else round(cost.max_usd, 2),
            )
        )
    rows += usage_rows(ctx)

    components = sum(1 for r in rec["resources"] if not r["custom"])
    return StackPlan(stack, rows, usage, components=components)


def plan_stack(stack: str, root: Path = REPO_ROOT, overrides: Mapping[str, Any] | None = None) -> StackPlan:
    """Run the program of `root` for `stack` under mocks and price every resource."""
    return price_resources(stack, record(stack, root, overrides))
