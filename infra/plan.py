"""`python -m infra.plan STACK [--compare REF]` (also `prethrift plan STACK`): an offline
preview. It runs the Pulumi program under mocks, lists every resource with its key settings
and a projected monthly cost (price table: infra/pricing.py), and with `--compare REF` the
cost difference against another git revision, for pull requests."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infra import pricing
from infra.mocks import REPO_ROOT, record

SERVICE_OF_PREFIX: list[tuple[str, str]] = [
    ("aws:ecs/", "compute"),
    ("aws:appautoscaling/", "compute"),
    ("aws:autoscaling/", "compute"),
    ("aws:ec2/launchTemplate", "compute"),
    ("aws:ecr/", "compute"),
    ("docker-build:", "compute"),
    ("aws:rds/", "database"),
    ("aws:elasticache/", "cache"),
    ("aws:ec2/", "network"),
    ("aws:lb/", "network"),
    ("aws:route53/", "network"),
    ("aws:s3/", "storage"),
    ("aws:cloudwatch/", "observability"),
    ("aws:sns/", "observability"),
    ("aws:iam/", "security"),
    ("aws:ssm/", "security"),
    ("aws:kms/", "security"),
    ("usage:dataTransfer", "network"),
    ("usage:rds/", "database"),
    ("aws:cognito/", "security"),
    ("aws:acm/", "network"),
    ("aws:cloudfront/", "network"),
    ("aws:wafv2/", "security"),
    ("usage:cloudwatch/", "observability"),
    ("usage:s3/", "storage"),
    ("random:", "security"),
]

KEY_SETTINGS: dict[str, tuple[str, ...]] = {
    "aws:ec2/vpc:Vpc": ("cidrBlock",),
    "aws:ec2/subnet:Subnet": ("cidrBlock", "availabilityZone"),
    "aws:ec2/vpcEndpoint:VpcEndpoint": ("serviceName", "vpcEndpointType"),
    "aws:ecs/cluster:Cluster": ("name",),
    "aws:ecs/service:Service": ("name", "desiredCount"),
    "aws:ecs/taskDefinition:TaskDefinition": ("family", "cpu", "memory", "requiresCompatibilities"),
    "aws:rds/instance:Instance": (
        "instanceClass",
        "engineVersion",
        "allocatedStorage",
        "multiAz",
        "deletionProtection",
        "backupRetentionPeriod",
    ),
    "aws:elasticache/replicationGroup:ReplicationGroup": (
        "engine",
        "nodeType",
        "numCacheClusters",
        "automaticFailoverEnabled",
    ),
    "aws:lb/loadBalancer:LoadBalancer": ("loadBalancerType", "enableDeletionProtection"),
    "aws:lb/listener:Listener": ("port", "protocol"),
    "aws:lb/targetGroup:TargetGroup": ("port", "targetType"),
    "aws:cloudwatch/logGroup:LogGroup": ("name", "retentionInDays"),
    "aws:cloudwatch/metricAlarm:MetricAlarm": ("metricName", "threshold"),
    "aws:ssm/parameter:Parameter": ("name", "type"),
    "aws:appautoscaling/target:Target": ("minCapacity", "maxCapacity"),
    "aws:autoscaling/group:Group": ("minSize", "maxSize"),
    "aws:ec2/launchTemplate:LaunchTemplate": ("instanceType",),
    "aws:ecr/repository:Repository": ("name", "imageTagMutability"),
    "aws:cloudfront/distribution:Distribution": ("priceClass",),
    "aws:wafv2/webAcl:WebAcl": ("scope",),
}


@dataclass(frozen=True)
class PlanRow:
    type: str
    name: str
    service: str
    settings: dict[str, str]
    monthly_usd: float
    note: str = ""
    max_monthly_usd: float | None = None
    """At every autoscaling group's maximum; None where it cannot scale (same as steady)."""

    @property
    def at_max(self) -> float:
        return self.monthly_usd if self.max_monthly_usd is None else self.max_monthly_usd

    @property
    def is_usage(self) -> bool:
        """A usage-priced line (data transfer, backups) rather than a resource of the program."""
        return self.type.startswith("usage:")


@dataclass(frozen=True)
class StackPlan:
    stack: str
    rows: list[PlanRow]
    usage: pricing.Usage
    source: str = pricing.SOURCE
    as_of: str = pricing.AS_OF
    components: int = 0

    @property
    def total(self) -> float:
        return round(sum(row.monthly_usd for row in self.rows), 2)

    @property
    def max_total(self) -> float:
        """Monthly cost with every service at its autoscaling maximum all month."""
        return round(sum(row.at_max for row in self.rows), 2)

    @property
    def resources(self) -> int:
        return sum(1 for row in self.rows if not row.is_usage)

    def by_service(self) -> dict[str, float]:
        sums: dict[str, float] = defaultdict(float)
        for row in self.rows:
            sums[row.service] += row.monthly_usd
        return {k: round(v, 2) for k, v in sorted(sums.items(), key=lambda kv: -kv[1])}

    def as_dict(self) -> dict[str, Any]:
        return {
            "stack": self.stack,
            "total": self.total,
            "max_total": self.max_total,
            "resources": self.resources,
            "by_service": self.by_service(),
            "source": self.source,
            "as_of": self.as_of,
            "usage": self.usage.__dict__,
            "components": self.components,
            "rows": [row.__dict__ for row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StackPlan:
        """The inverse of `as_dict`: a plan recorded at deploy time, read back without Pulumi."""
        fields = set(PlanRow.__dataclass_fields__)
        rows = [PlanRow(**{k: v for k, v in row.items() if k in fields}) for row in data["rows"]]
        usage = pricing.Usage(**{k: float(v) for k, v in (data.get("usage") or {}).items()})
        return cls(
            str(data["stack"]),
            rows,
            usage,
            str(data.get("source", pricing.SOURCE)),
            str(data.get("as_of", pricing.AS_OF)),
            int(data.get("components", 0)),
        )


def service_of(typ: str) -> str:
    for prefix, service in SERVICE_OF_PREFIX:
        if typ.startswith(prefix):
            return service
    return "other"


def short_type(typ: str) -> str:
    """`aws:ecs/service:Service` -> `ecs.Service`; usage lines keep their own name."""
    if typ.startswith("usage:"):
        return typ
    package, _, rest = typ.partition(":")
    module, _, name = rest.rpartition(":")
    module = module.split("/")[0]
    return f"{module if module != 'index' else package}.{name}"


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return ",".join(_fmt(v) for v in value)
    return str(value)


def _settings(resource: Mapping[str, Any]) -> dict[str, str]:
    inputs = resource["inputs"]
    keys = KEY_SETTINGS.get(resource["type"], ())
    return {key: _fmt(inputs[key]) for key in keys if inputs.get(key) is not None}


@dataclass(frozen=True)
class Cost:
    """What one resource costs a month, and why."""

    monthly_usd: float = 0.0
    note: str = ""
    max_usd: float | None = None


@dataclass
class PriceContext:
    """What a price rule may need beyond its own resource: usage assumptions and siblings."""

    usage: pricing.Usage
    by_type: Mapping[str, list[Mapping[str, Any]]]
    task_by_arn: Mapping[str, Mapping[str, Any]]
    hours: float = pricing.HOURS_PER_MONTH

    def count(self, typ: str) -> int:
        return len(self.by_type.get(typ, []))

    def max_count(self, service_name: str) -> float | None:
        """The autoscaling maximum of an ECS service, if it scales."""
        for target in self.by_type.get("aws:appautoscaling/target:Target", []):
            resource_id = str(target["inputs"].get("resourceId") or "")
            if resource_id.rsplit("/", 1)[-1] == service_name:
                return float(target["inputs"]["maxCapacity"])
        return None

    @property
    def running_containers(self) -> float:
        """Containers running at the services' desired counts (the migrate step exits at start)."""
        total = 0.0
        for service in self.by_type.get(SERVICE, []):
            task = self.task_by_arn.get(service["inputs"].get("taskDefinition"))
            if task is None:
                continue
            definitions = json.loads(task["inputs"]["containerDefinitions"])
            long_running = sum(1 for c in definitions if c.get("name") != "migrate")
            total += float(service["inputs"].get("desiredCount") or 0) * long_running
        return total

    def collector_metrics(self) -> tuple[int, bool]:
        """The custom metrics the task collectors make, and whether every collector allow-lists
        them (without an allow-list, every Prometheus series becomes metrics)."""
        names: set[str] = set()
        for task in self.by_type.get("aws:ecs/taskDefinition:TaskDefinition", []):
            for container in json.loads(task["inputs"]["containerDefinitions"]):
                env = {e["name"]: e["value"] for e in container.get("environment") or []}
                if "AOT_CONFIG_CONTENT" not in env:
                    continue
                emf = json.loads(env["AOT_CONFIG_CONTENT"]).get("exporters", {}).get("awsemf", {})
                declarations = emf.get("metric_declarations")
                if not declarations:
                    return 0, False
                for declaration in declarations:
                    sets = max(1, len(declaration.get("dimensions") or []))
                    for selector in declaration.get("metric_name_selectors") or []:
                        names |= {f"{selector.strip('^$')}#{i}" for i in range(sets)}
        return len(names), True

    @property
    def ec2_tasks(self) -> float:
        """ECS tasks placed on EC2 capacity providers (the GPU worker), by desired count."""
        total = 0.0
        for service in self.by_type.get(SERVICE, []):
            inputs = service["inputs"]
            desired = float(inputs.get("desiredCount") or 0)
            split = pricing.split_capacity(desired, inputs.get("capacityProviderStrategies") or [])
            total += desired - split.get("FARGATE", 0.0) - split.get("FARGATE_SPOT", 0.0)
        return total


Rule = Callable[[Mapping[str, Any], PriceContext], Cost]
SERVICE = "aws:ecs/service:Service"


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
    return Cost(
        factor * (ctx.hours * hourly + storage * pricing.RDS_GP3_GB_MONTH),
        f"{'Multi-AZ' if factor > 1 else 'single-AZ'}, {storage:g} GB gp3",
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
    data = ctx.usage.nat_data_gb / (ctx.count("aws:ec2/natGateway:NatGateway") or 1)
    return Cost(ctx.hours * pricing.NAT_HOUR + data * pricing.NAT_GB, f"{data:.1f} GB processed")


def _eip(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    return Cost(ctx.hours * pricing.PUBLIC_IPV4_HOUR, "public IPv4")


def _bucket(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    if "images" in r["name"]:
        gb = ctx.usage.images_gb
        return Cost(gb * pricing.S3_STANDARD_GB_MONTH, f"{gb:g} GB Standard; requests on images-requests")
    return Cost(0.0, "access logs, expire by lifecycle; not modelled")


def _log_group(r: Mapping[str, Any], ctx: PriceContext) -> Cost:
    ingest = ctx.usage.logs_ingest_gb / (ctx.count("aws:cloudwatch/logGroup:LogGroup") or 1)
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
    templates = ctx.by_type.get("aws:ec2/launchTemplate:LaunchTemplate", [])
    itype = templates[0]["inputs"]["instanceType"] if templates else "unknown"
    count = max(float(r["inputs"].get("minSize") or 0), ctx.ec2_tasks)
    hourly = pricing.lookup(pricing.EC2_GPU_HOUR, itype, "EC2 instance type")
    most = float(r["inputs"].get("maxSize") or count)
    return Cost(ctx.hours * hourly * count, f"{count:g} x {itype} (up to {most:g})", ctx.hours * hourly * most)


def usage_rows(ctx: PriceContext) -> list[PlanRow]:
    """Costs that follow usage rather than a resource, each from a stated assumption."""
    usage = ctx.usage
    rows = [
        _image_downloads(ctx),
        _image_requests(ctx),
        _collector_metrics(ctx),
        PlanRow(
            "usage:dataTransfer/crossAz",
            "cross-az-traffic",
            "network",
            {},
            round(usage.cross_az_gb * 2 * pricing.CROSS_AZ_GB_EACH_WAY, 2),
            f"assumed {usage.cross_az_gb:g} GB between zones, billed each way",
        ),
    ]
    for db in ctx.by_type.get("aws:rds/instance:Instance", []):
        allocated = float(db["inputs"].get("allocatedStorage") or 0)
        billed = max(0.0, usage.backup_gb - allocated)
        rows.append(
            PlanRow(
                "usage:rds/backupStorage",
                f"{db['name']}-backups",
                "database",
                {"backupRetentionPeriod": _fmt(db["inputs"].get("backupRetentionPeriod"))},
                round(billed * pricing.RDS_BACKUP_GB_MONTH, 2),
                f"assumed {usage.backup_gb:g} GB of backups; the first {allocated:g} GB are free",
            )
        )
        if db["inputs"].get("enabledCloudwatchLogsExports"):
            rows.append(
                PlanRow(
                    "usage:cloudwatch/rdsLogs",
                    f"{db['name']}-logs",
                    "observability",
                    {},
                    round(usage.rds_logs_gb * pricing.LOGS_INGEST_GB, 2),
                    f"assumed {usage.rds_logs_gb:g} GB/month of exported PostgreSQL logs ingested "
                    f"(RDS's log group keeps them: storage grows {usage.rds_logs_gb:g} GB a month)",
                )
            )
    return rows


def _image_downloads(ctx: PriceContext) -> PlanRow:
    """Photos shoppers' browsers fetch: through CloudFront when the stack has it, else from S3."""
    usage = ctx.usage
    downloads_gb = usage.searches_per_month / 1000 * usage.download_gb_per_1000_searches
    views = usage.searches_per_month * usage.images_per_search
    assumed = (
        f"assumed {usage.searches_per_month:,.0f} searches x {usage.download_gb_per_1000_searches:g} GB "
        f"per 1,000 searches = {downloads_gb:,.0f} GB out"
    )
    if not ctx.count("aws:cloudfront/distribution:Distribution"):
        return PlanRow(
            "usage:dataTransfer/internetOut",
            "image-downloads",
            "network",
            {},
            round(downloads_gb * pricing.DATA_OUT_GB, 2),
            f"{assumed}, presigned from S3 at {pricing.DATA_OUT_GB}/GB",
        )
    free_gb = pricing.CLOUDFRONT_FREE_GB * usage.cdn_free_tier_share
    free_requests = pricing.CLOUDFRONT_FREE_REQUESTS * usage.cdn_free_tier_share
    billed_gb = max(0.0, downloads_gb - free_gb)
    billed_requests = max(0.0, views - free_requests)
    return PlanRow(
        "usage:dataTransfer/internetOut",
        "image-downloads",
        "network",
        {},
        round(
            billed_gb * pricing.CLOUDFRONT_GB + billed_requests / 10_000 * pricing.CLOUDFRONT_HTTPS_PER_10K, 2
        ),
        f"{assumed} through CloudFront at {pricing.CLOUDFRONT_GB}/GB ({billed_gb:,.0f} GB billed after "
        f"{free_gb:,.0f} GB free) and {views / 1e6:,.1f}M requests ({billed_requests / 1e6:,.1f}M billed)",
    )


def _image_requests(ctx: PriceContext) -> PlanRow:
    """S3 requests on the images bucket: uploads, the worker's reads, and photo reads (all of
    them when presigned, CloudFront's cache misses when it fronts the bucket)."""
    usage = ctx.usage
    views = usage.searches_per_month * usage.images_per_search
    if ctx.count("aws:cloudfront/distribution:Distribution"):
        views *= 1 - usage.cdn_cache_hit_ratio
    gets = views + usage.uploads_per_month
    puts = usage.uploads_per_month
    return PlanRow(
        "usage:s3/requests",
        "images-requests",
        "storage",
        {},
        round(puts / 1000 * pricing.S3_PUT_PER_1000 + gets / 1000 * pricing.S3_GET_PER_1000, 2),
        f"{puts:,.0f} PUT (assumed uploads), {gets / 1e6:,.2f}M GET (photo reads that reach S3, worker reads)",
    )


def _collector_metrics(ctx: PriceContext) -> PlanRow:
    metrics, allow_listed = ctx.collector_metrics()
    count = float(metrics) if allow_listed else ctx.usage.collector_series
    how = (
        "allow-listed by the collector" if allow_listed else "every Prometheus series (assumed), no allow-list"
    )
    return PlanRow(
        "usage:cloudwatch/customMetrics",
        "collector-metrics",
        "observability",
        {},
        round(count * pricing.CW_CUSTOM_METRIC_MONTH, 2),
        f"{count:g} custom metric(s), {how}",
    )


# One price rule per priced resource type; pricing.FREE_TYPES lists the types that cost nothing.
PRICE_RULES: dict[str, Rule] = {
    SERVICE: _ecs_service,
    "aws:rds/instance:Instance": _rds,
    "aws:elasticache/replicationGroup:ReplicationGroup": _cache,
    "aws:lb/loadBalancer:LoadBalancer": _alb,
    "aws:ec2/natGateway:NatGateway": _nat,
    "aws:ec2/eip:Eip": _eip,
    "aws:s3/bucket:Bucket": _bucket,
    "aws:cloudwatch/logGroup:LogGroup": _log_group,
    "aws:cloudwatch/metricAlarm:MetricAlarm": _alarm,
    "aws:ecr/repository:Repository": _ecr,
    "aws:kms/key:Key": _kms_key,
    "aws:cloudwatch/compositeAlarm:CompositeAlarm": _composite_alarm,
    "aws:ecs/cluster:Cluster": _cluster,
    "aws:autoscaling/group:Group": _gpu_group,
    "aws:wafv2/webAcl:WebAcl": _web_acl,
}


def price_resources(stack: str, rec: Mapping[str, Any]) -> StackPlan:
    """Price a mock record (infra/mocks.py) of one stack."""
    usage = pricing.Usage.from_config(rec["config"].get("prethrift:planUsage"))
    resources = [r for r in rec["resources"] if r["custom"]]
    by_type: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in resources:
        by_type[r["type"]].append(r)
    task_by_arn = {r["state"]["arn"]: r for r in by_type["aws:ecs/taskDefinition:TaskDefinition"]}
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
            cost = Cost(0.0, "no price rule; add one to PRICE_RULES in infra/plan.py")
        rows.append(
            PlanRow(
                typ,
                r["name"],
                service_of(typ),
                _settings(r),
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


@dataclass(frozen=True)
class CostDiff:
    stack: str
    base_ref: str
    base_total: float
    head_total: float
    changes: list[tuple[str, str, float, float]] = field(default_factory=list)
    """(type, name, before, after) for every resource whose cost or presence changed."""
    added: frozenset[tuple[str, str]] = frozenset()
    removed: frozenset[tuple[str, str]] = frozenset()

    @property
    def delta(self) -> float:
        return round(self.head_total - self.base_total, 2)


def compare_plans(base: StackPlan | None, head: StackPlan, base_ref: str) -> CostDiff:
    """Per-resource cost changes from `base` (None: the stack did not exist) to `head`."""
    before = {(r.type, r.name): r.monthly_usd for r in base.rows} if base else {}
    after = {(r.type, r.name): r.monthly_usd for r in head.rows}
    changes = [
        (typ, name, before.get((typ, name), 0.0), after.get((typ, name), 0.0))
        for typ, name in sorted(set(before) | set(after))
        if (typ, name) not in before
        or (typ, name) not in after
        or round(before[(typ, name)] - after[(typ, name)], 2) != 0
    ]
    return CostDiff(
        head.stack,
        base_ref,
        base.total if base else 0.0,
        head.total,
        changes,
        frozenset(set(after) - set(before)),
        frozenset(set(before) - set(after)),
    )


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


def plan_at_ref(stack: str, ref: str, root: Path = REPO_ROOT) -> StackPlan | None:
    """The plan of `stack` at git revision `ref`, or None if the stack did not exist there."""

    def git(*args: str, cwd: Path = root) -> str:
        return subprocess.run(
            ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
        ).stdout.strip()

    commit = git("rev-parse", "--verify", f"{ref}^{{commit}}")
    with tempfile.TemporaryDirectory(prefix="prethrift-plan-") as tmp:
        tree = Path(tmp) / "tree"
        git("worktree", "add", "--detach", "--quiet", str(tree), commit)
        try:
            if not (tree / "infra" / "__main__.py").exists() or not (tree / f"Pulumi.{stack}.yaml").exists():
                return None
            return plan_stack(stack, tree)
        finally:
            git("worktree", "remove", "--force", str(tree))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="prethrift plan", description=__doc__.split("\n\n")[0])
    parser.add_argument("stack", help="stack name: a Pulumi.<stack>.yaml must exist")
    parser.add_argument(
        "--compare", metavar="REF", help="also print the cost difference against this git revision"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    ns = parser.parse_args(argv)
    try:
        plan = plan_stack(ns.stack)
        diff = compare_plans(plan_at_ref(ns.stack, ns.compare), plan, ns.compare) if ns.compare else None
    except (FileNotFoundError, RuntimeError, KeyError, ValueError, subprocess.CalledProcessError) as exc:
        detail = exc.stderr if isinstance(exc, subprocess.CalledProcessError) else exc
        print(f"prethrift plan: {detail}", file=sys.stderr)
        return 2
    if ns.json:
        out = plan.as_dict()
        if diff is not None:
            out["compare"] = {
                "ref": diff.base_ref,
                "base_total": diff.base_total,
                "delta": diff.delta,
                "changes": diff.changes,
            }
        print(json.dumps(out, indent=2))
        return 0
    print(format_plan(plan))
    if diff is not None:
        print()
        print(format_diff(diff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
