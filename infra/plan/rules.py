"""The price rules: one per priced resource type, each turning a resource into its monthly cost
from the price table (infra/pricing.py). A new priced resource gets its rule here and a line in
PRICE_RULES; pricing.FREE_TYPES lists the types that cost nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from infra import pricing
from infra import resource_types as T
from infra.plan.context import PriceContext, Rule
from infra.plan.rows import Cost


def _ecs_service(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    inputs = r["inputs"]
    task = ctx.task_by_arn[inputs["taskDefinition"]]["inputs"]
    strategy = inputs.get("capacityProviderStrategies") or []
    hour = pricing.fargate_task_hour(float(task["cpu"]), float(task["memory"]))

    def monthly(count: float) -> tuple[float, float, float]:
        split = pricing.split_capacity(count, strategy)
        on_demand, spot = split.get("FARGATE", 0.0), split.get("FARGATE_SPOT", 0.0)
        return ctx.hours * hour * (on_demand + spot * pricing.FARGATE_SPOT_FACTOR), on_demand, spot

    desired = float(inputs.get("desiredCount") or 0)
    cost, on_demand, spot = monthly(desired)
    if desired - on_demand - spot:
        return Cost(0.0, f"{desired:g} task(s) on EC2 capacity (priced on the Auto Scaling group)")
    most = ctx.max_count(str(inputs.get("name")))
    note = (
        f"{desired:g} task(s) x {task['cpu']}/{task['memory']}: "
        f"{on_demand:g} on-demand, {spot:g} Spot at {pricing.FARGATE_SPOT_FACTOR:.0%}"
    )
    if most is not None and most > desired:
        note += f"; up to {most:g} task(s)"
    return Cost(cost, note, monthly(most)[0] if most is not None else None)


def _rds(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    inputs = r["inputs"]
    factor = pricing.RDS_MULTI_AZ_FACTOR if inputs.get("multiAz") else 1.0
    hourly = pricing.lookup(pricing.RDS_POSTGRES_HOUR, inputs["instanceClass"], "RDS class")
    storage = float(inputs.get("allocatedStorage") or 0)
    role = "read replica, " if inputs.get("replicateSourceDb") else ""
    return Cost(
        factor * (ctx.hours * hourly + storage * pricing.RDS_GP3_GB_MONTH),
        f"{role}{'Multi-AZ' if factor > 1 else 'single-AZ'}, {storage:g} GB gp3",
    )


def _cache(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    inputs = r["inputs"]
    nodes = float(inputs.get("numCacheClusters") or 1)
    hourly = pricing.lookup(pricing.ELASTICACHE_NODE_HOUR, inputs["nodeType"], "cache node")
    factor = pricing.VALKEY_FACTOR if inputs.get("engine") == "valkey" else 1.0
    return Cost(
        ctx.hours * hourly * nodes * factor, f"{nodes:g} node(s){', Valkey -20%' if factor < 1 else ''}"
    )


def _alb(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    ips = len(r["inputs"].get("subnets") or [])
    lcu = ctx.usage.alb_lcu
    return Cost(
        ctx.hours * (pricing.ALB_HOUR + lcu * pricing.ALB_LCU_HOUR + ips * pricing.PUBLIC_IPV4_HOUR),
        f"{lcu:g} LCU average, {ips} public IPv4",
    )


def _nat(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    data = ctx.usage.nat_data_gb / (ctx.count(T.EC2_NAT_GATEWAY) or 1)
    return Cost(ctx.hours * pricing.NAT_HOUR + data * pricing.NAT_GB, f"{data:.1f} GB processed")


def _eip(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    return Cost(ctx.hours * pricing.PUBLIC_IPV4_HOUR, "public IPv4")


def _bucket(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    if "images" in r["name"]:
        gb = ctx.usage.images_gb
        return Cost(gb * pricing.S3_STANDARD_GB_MONTH, f"{gb:g} GB Standard; requests on images-requests")
    return Cost(0.0, "access logs, expire by lifecycle; not modelled")


def _log_group(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    ingest = ctx.usage.logs_ingest_gb / (ctx.count(T.CLOUDWATCH_LOG_GROUP) or 1)
    # Steady state: what the retention keeps is about a month's ingest per 30 days retained.
    days = float(r["inputs"].get("retentionInDays") or 0) or 3650.0
    stored = ingest * days / 30
    return Cost(
        ingest * pricing.LOGS_INGEST_GB + stored * pricing.LOGS_STORED_GB_MONTH,
        f"{ingest:.1f} GB ingested, {stored:.1f} GB stored ({days:g} days)",
    )


def _alarm(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    metrics = sum(1 for q in r["inputs"].get("metricQueries") or [] if q.get("metric")) or 1
    return Cost(metrics * pricing.ALARM_METRIC_MONTH, f"{metrics} metric(s)")


def _kms_key(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    return Cost(pricing.KMS_KEY_MONTH, "customer managed key; requests within the free tier")


def _composite_alarm(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    return Cost(pricing.COMPOSITE_ALARM_MONTH, "composite alarm")


def _ecr(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    gb = ctx.usage.ecr_storage_gb
    return Cost(gb * pricing.ECR_GB_MONTH, f"{gb:g} GB stored")


def _cluster(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    """Container Insights with enhanced observability: observations of every running container."""
    settings = {s.get("name"): s.get("value") for s in r["inputs"].get("settings") or []}
    if settings.get("containerInsights") != "enhanced":
        return Cost(0.0, f"Container Insights {settings.get('containerInsights', 'disabled')}")
    containers = ctx.running_containers
    observations = containers * pricing.CONTAINER_INSIGHTS_OBSERVATIONS_PER_CONTAINER_MINUTE * 60 * ctx.hours
    return Cost(
        observations / 1e6 * pricing.CONTAINER_INSIGHTS_PER_MILLION_OBSERVATIONS,
        f"Container Insights enhanced: {containers:g} running container(s) x "
        f"{pricing.CONTAINER_INSIGHTS_OBSERVATIONS_PER_CONTAINER_MINUTE} observations a minute = "
        f"{observations / 1e6:,.1f}M observations",
    )


def _web_acl(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    rules = len(r["inputs"].get("rules") or [])
    requests = ctx.usage.searches_per_month * ctx.usage.requests_per_search
    return Cost(
        pricing.WAF_WEB_ACL_MONTH
        + rules * pricing.WAF_RULE_MONTH
        + requests / 1e6 * pricing.WAF_PER_MILLION_REQUESTS,
        f"web ACL, {rules} rules (managed groups count one each), {requests / 1e6:,.2f}M requests inspected",
    )


def _gpu_group(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    """GPU instances: as many as the EC2-placed tasks need, never below the group's minimum."""
    templates = ctx.by_type.get(T.EC2_LAUNCH_TEMPLATE, [])
    itype = templates[0]["inputs"]["instanceType"] if templates else "unknown"
    count = max(float(r["inputs"].get("minSize") or 0), ctx.ec2_tasks)
    hourly = pricing.lookup(pricing.EC2_GPU_HOUR, itype, "EC2 instance type")
    most = float(r["inputs"].get("maxSize") or count)
    return Cost(ctx.hours * hourly * count, f"{count:g} x {itype} (up to {most:g})", ctx.hours * hourly * most)


# One price rule per priced resource type; pricing.FREE_TYPES lists the types that cost nothing.
PRICE_RULES: dict[str, Rule] = {
    T.ECS_SERVICE: _ecs_service,
    T.RDS_INSTANCE: _rds,
    T.ELASTICACHE_REPLICATION_GROUP: _cache,
    T.LB_LOAD_BALANCER: _alb,
    T.EC2_NAT_GATEWAY: _nat,
    T.EC2_EIP: _eip,
    T.S3_BUCKET: _bucket,
    T.CLOUDWATCH_LOG_GROUP: _log_group,
    T.CLOUDWATCH_METRIC_ALARM: _alarm,
    T.ECR_REPOSITORY: _ecr,
    T.KMS_KEY: _kms_key,
    T.CLOUDWATCH_COMPOSITE_ALARM: _composite_alarm,
    T.ECS_CLUSTER: _cluster,
    T.AUTOSCALING_GROUP: _gpu_group,
    T.WAFV2_WEB_ACL: _web_acl,
}
