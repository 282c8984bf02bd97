"""The price table of the offline plan, and the rules that turn a resource into a monthly cost.

Source: the AWS public price list (https://aws.amazon.com/pricing/ and each service's pricing
page linked below), region us-east-1 (N. Virginia), on-demand, as of 2026-06. Prices marked
`derived` scale a listed price by AWS's size ratio within the instance family (each size up
doubles the price). Check the linked page before relying on a figure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from infra import resource_types as T

SOURCE = "AWS public price list (aws.amazon.com/pricing), us-east-1 on-demand, 2026-06"
AS_OF = "2026-06"
HOURS_PER_MONTH = 730


class Price(float):
    """A listed price in USD, with the public page it was read from and the month it was read
    (YYYY-MM), so that a price without a source cannot slip into the plan unnoticed."""

    source: str
    as_of: str

    def __new__(cls, usd: float, source: str, as_of: str = AS_OF) -> Price:
        price = super().__new__(cls, usd)
        price.source = source
        price.as_of = as_of
        return price


FARGATE = "https://aws.amazon.com/fargate/pricing/"
RDS = "https://aws.amazon.com/rds/postgresql/pricing/"
ELASTICACHE = "https://aws.amazon.com/elasticache/pricing/"
ELB = "https://aws.amazon.com/elasticloadbalancing/pricing/"
VPC = "https://aws.amazon.com/vpc/pricing/"
S3 = "https://aws.amazon.com/s3/pricing/"
CLOUDWATCH = "https://aws.amazon.com/cloudwatch/pricing/"
EC2 = "https://aws.amazon.com/ec2/pricing/on-demand/"
ECR = "https://aws.amazon.com/ecr/pricing/"
KMS = "https://aws.amazon.com/kms/pricing/"
WAF = "https://aws.amazon.com/waf/pricing/"
CLOUDFRONT = "https://aws.amazon.com/cloudfront/pricing/"

# Numbers the rules use that are not prices: assumptions, ratios and free allowances.
NOT_PRICES = frozenset(
    {
        "HOURS_PER_MONTH",
        "FARGATE_SPOT_FACTOR",
        "RDS_MULTI_AZ_FACTOR",
        "VALKEY_FACTOR",
        "CONTAINER_INSIGHTS_OBSERVATIONS_PER_CONTAINER_MINUTE",
        "CLOUDFRONT_FREE_GB",
        "CLOUDFRONT_FREE_REQUESTS",
    }
)

# Fargate, Linux/x86.
FARGATE_VCPU_HOUR = Price(0.04048, FARGATE)
FARGATE_GB_HOUR = Price(0.004445, FARGATE)
# Fargate Spot is listed at up to 70% off and varies; the plan assumes the least favourable 50%.
FARGATE_SPOT_FACTOR = 0.5

# RDS for PostgreSQL, Single-AZ; Multi-AZ doubles instance and storage.
RDS_POSTGRES_HOUR: dict[str, float] = {
    "db.t4g.micro": Price(0.01625, RDS),  # derived
    "db.t4g.small": Price(0.0325, RDS),  # derived
    "db.t4g.medium": Price(0.065, RDS),  # list
    "db.t4g.large": Price(0.13, RDS),  # derived
    "db.t4g.xlarge": Price(0.26, RDS),  # derived
}
RDS_MULTI_AZ_FACTOR = 2.0  # list: db.t4g.medium 0.065 Single-AZ, 0.130 Multi-AZ
RDS_GP3_GB_MONTH = Price(0.115, RDS)  # list; Multi-AZ stores twice
# Backup storage up to the provisioned storage is free; beyond it, per GB-month.
RDS_BACKUP_GB_MONTH = Price(0.095, RDS)

# ElastiCache, node-based.
ELASTICACHE_NODE_HOUR: dict[str, float] = {
    "cache.t3.micro": Price(0.017, ELASTICACHE),  # derived
    "cache.t3.small": Price(0.034, ELASTICACHE),  # derived
    "cache.t3.medium": Price(0.068, ELASTICACHE),  # list
    "cache.t4g.micro": Price(0.016, ELASTICACHE),  # list
    "cache.t4g.small": Price(0.032, ELASTICACHE),  # list
    "cache.t4g.medium": Price(0.065, ELASTICACHE),  # list
}
# AWS prices node-based Valkey 20% below Redis OSS (list, announced 2024-10).
VALKEY_FACTOR = 0.8

ALB_HOUR = Price(0.0225, ELB)
ALB_LCU_HOUR = Price(0.008, ELB)
NAT_HOUR = Price(0.045, VPC)
NAT_GB = Price(0.045, VPC)
PUBLIC_IPV4_HOUR = Price(0.005, VPC)  # list: every public IPv4 address since 2024-02
S3_STANDARD_GB_MONTH = Price(0.023, S3)  # first 50 TB
# CloudWatch Logs, standard log class: ingestion and storage.
LOGS_INGEST_GB = Price(0.50, CLOUDWATCH)
LOGS_STORED_GB_MONTH = Price(0.03, CLOUDWATCH)
# EC2 Data Transfer: out to the internet, first 10 TB/month (the 100 GB/month free allowance is
# ignored: it is shared by the whole account), and between Availability Zones in the same region,
# charged in each direction.
DATA_OUT_GB = Price(0.09, EC2)
CROSS_AZ_GB_EACH_WAY = Price(0.01, EC2)
ALARM_METRIC_MONTH = Price(0.10, CLOUDWATCH)  # list: standard-resolution alarm, per metric it evaluates
ECR_GB_MONTH = Price(0.10, ECR)  # list
KMS_KEY_MONTH = Price(1.00, KMS)  # list: customer managed key
COMPOSITE_ALARM_MONTH = Price(0.50, CLOUDWATCH)  # list

# Added from the pages named (the lines the plan had left out).
# CloudWatch custom metrics, first 10,000 metrics a month.
CW_CUSTOM_METRIC_MONTH = Price(0.30, CLOUDWATCH, "2026-12")
# Same page, Container Insights with enhanced observability for ECS, billed per observation (one
# metric value for one task or container at one minute). The price and the observations per
# container-minute are the plan's reading of that page: verify there before relying on them.
CONTAINER_INSIGHTS_PER_MILLION_OBSERVATIONS = Price(0.21, CLOUDWATCH, "2026-12")
CONTAINER_INSIGHTS_OBSERVATIONS_PER_CONTAINER_MINUTE = 20
# S3 Standard: PUT, COPY, POST, LIST per 1,000; GET per 1,000.
S3_PUT_PER_1000 = Price(0.005, S3, "2026-12")
S3_GET_PER_1000 = Price(0.0004, S3, "2026-12")
# WAF: per web ACL, per rule (a managed rule group counts as one; AWS's baseline groups carry no
# subscription), per million requests inspected.
WAF_WEB_ACL_MONTH = Price(5.00, WAF, "2026-12")
WAF_RULE_MONTH = Price(1.00, WAF, "2026-12")
WAF_PER_MILLION_REQUESTS = Price(0.60, WAF, "2026-12")
# CloudFront: data transfer out to the internet, first 10 TB a month in the United States, Mexico,
# Canada and Europe (the PriceClass_100 edges), HTTPS requests per 10,000 there; origin fetches
# from S3 cost nothing. The always-free tier (1 TB out and 10,000,000 requests a month) is per
# account: each stack file says what share of it it claims.
CLOUDFRONT_GB = Price(0.085, CLOUDFRONT, "2026-12")
CLOUDFRONT_HTTPS_PER_10K = Price(0.01, CLOUDFRONT, "2026-12")
CLOUDFRONT_FREE_GB = 1024.0
CLOUDFRONT_FREE_REQUESTS = 10_000_000.0
EC2_GPU_HOUR: dict[str, float] = {
    "g4dn.xlarge": Price(0.526, EC2),  # list
    "g5.xlarge": Price(1.006, EC2),  # list
    "g6.xlarge": Price(0.8048, EC2),  # list
}

# Resource types with no charge of their own (or none until used, like SNS).
FREE_TYPES = frozenset(
    {
        T.EC2_VPC,
        T.EC2_SUBNET,
        T.EC2_ROUTE_TABLE,
        T.EC2_ROUTE_TABLE_ASSOCIATION,
        T.EC2_INTERNET_GATEWAY,
        T.EC2_SECURITY_GROUP,
        T.EC2_DEFAULT_SECURITY_GROUP,
        T.EC2_VPC_ENDPOINT,
        T.IAM_ROLE,
        T.IAM_ROLE_POLICY,
        T.IAM_ROLE_POLICY_ATTACHMENT,
        T.IAM_INSTANCE_PROFILE,
        T.SSM_PARAMETER,
        T.RANDOM_PASSWORD,
        T.S3_BUCKET_PUBLIC_ACCESS_BLOCK,
        T.S3_BUCKET_OWNERSHIP_CONTROLS,
        T.S3_BUCKET_SERVER_SIDE_ENCRYPTION_CONFIGURATION,
        T.S3_BUCKET_VERSIONING,
        T.S3_BUCKET_LIFECYCLE_CONFIGURATION,
        T.S3_BUCKET_CORS_CONFIGURATION,
        T.S3_BUCKET_POLICY,
        T.LB_TARGET_GROUP,
        T.LB_LISTENER,
        T.LB_LISTENER_RULE,
        T.RDS_SUBNET_GROUP,
        T.RDS_PARAMETER_GROUP,
        T.ELASTICACHE_SUBNET_GROUP,
        T.ECS_CLUSTER,
        T.ECS_CLUSTER_CAPACITY_PROVIDERS,
        T.ECS_TASK_DEFINITION,
        T.ECS_CAPACITY_PROVIDER,
        T.APPAUTOSCALING_TARGET,
        T.APPAUTOSCALING_POLICY,
        T.EC2_LAUNCH_TEMPLATE,
        T.ECR_LIFECYCLE_POLICY,
        T.DOCKER_BUILD_IMAGE,
        T.SNS_TOPIC,
        T.SNS_TOPIC_SUBSCRIPTION,
        T.ROUTE53_RECORD,
        T.KMS_ALIAS,
        T.SNS_TOPIC_POLICY,
        # Public ACM certificates are free: https://aws.amazon.com/certificate-manager/pricing/
        T.ACM_CERTIFICATE,
        T.ACM_CERTIFICATE_VALIDATION,
        # Cognito: the first 10,000 monthly active users are free (a handful of operators here).
        T.COGNITO_USER_POOL,
        T.COGNITO_USER_POOL_CLIENT,
        T.COGNITO_USER_POOL_DOMAIN,
        # Priced by usage (transfer and requests): the image-downloads line.
        T.CLOUDFRONT_DISTRIBUTION,
        T.CLOUDFRONT_ORIGIN_ACCESS_CONTROL,
        T.WAFV2_WEB_ACL_ASSOCIATION,
    }
)


@dataclass(frozen=True)
class Usage:
    """Assumptions for usage-priced items, from `prethrift:planUsage` in the stack file."""

    alb_lcu: float = 1.0
    nat_data_gb: float = 20.0
    logs_ingest_gb: float = 5.0
    images_gb: float = 20.0
    ecr_storage_gb: float = 5.0
    searches_per_month: float = 100_000.0
    download_gb_per_1000_searches: float = 1.5
    """Presigned image downloads: 1,000 searches x 10 result images viewed x ~150 KB."""
    cross_az_gb: float = 10.0
    """Task <-> database/cache/task traffic that crosses zones (each GB is billed both ways)."""
    backup_gb: float = 0.0
    """RDS backup storage in use; only what exceeds the provisioned storage is billed."""
    images_per_search: float = 10.0
    """Result photos a shopper's browser fetches per search (each a request; the GB are above)."""
    requests_per_search: float = 3.0
    """Requests through the ALB (and so the WAF) per search: the search, suggestions, item views."""
    uploads_per_month: float = 10_000.0
    """Photos listed: one S3 PUT each, and one GET for each model the worker embeds them with."""
    cdn_cache_hit_ratio: float = 0.9
    """Photo requests CloudFront answers from its cache; the rest are S3 GETs."""
    cdn_free_tier_share: float = 0.0
    """The share of the account's always-free CloudFront allowance this stack claims (0 to 1)."""
    collector_series: float = 150.0
    """Custom metrics the collector makes without an allow-list: every Prometheus series the app
    exposes, with the EMF exporter's default dimension roll-ups."""
    rds_logs_gb: float = 1.0
    """PostgreSQL logs RDS exports to CloudWatch Logs a month (slow statements, errors, upgrades)."""

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> Usage:
        raw = raw or {}
        names = {
            "albLcu": "alb_lcu",
            "natDataGb": "nat_data_gb",
            "logsIngestGb": "logs_ingest_gb",
            "imagesGb": "images_gb",
            "ecrStorageGb": "ecr_storage_gb",
            "searchesPerMonth": "searches_per_month",
            "downloadGbPer1000Searches": "download_gb_per_1000_searches",
            "crossAzGb": "cross_az_gb",
            "backupGb": "backup_gb",
            "imagesPerSearch": "images_per_search",
            "requestsPerSearch": "requests_per_search",
            "uploadsPerMonth": "uploads_per_month",
            "cdnCacheHitRatio": "cdn_cache_hit_ratio",
            "cdnFreeTierShare": "cdn_free_tier_share",
            "collectorSeries": "collector_series",
            "rdsLogsGb": "rds_logs_gb",
        }
        unknown = set(raw) - set(names)
        if unknown:
            raise ValueError(f"prethrift:planUsage has unknown keys {sorted(unknown)}; known: {sorted(names)}")
        return cls(**{names[k]: float(v) for k, v in raw.items()})


def fargate_task_hour(cpu_units: float, memory_mib: float) -> float:
    """On-demand price of one Fargate x86 task-hour of this size."""
    return cpu_units / 1024 * FARGATE_VCPU_HOUR + memory_mib / 1024 * FARGATE_GB_HOUR


def split_capacity(desired: float, strategy: list[Mapping[str, Any]]) -> dict[str, float]:
    """How ECS places `desired` tasks over a capacity provider strategy: base first, then weight."""
    split = {str(item["capacityProvider"]): 0.0 for item in strategy}
    remaining = desired
    for item in strategy:
        base = min(float(item.get("base") or 0), remaining)
        split[str(item["capacityProvider"])] += base
        remaining -= base
    total_weight = sum(float(item.get("weight") or 0) for item in strategy)
    for item in strategy:
        if total_weight:
            split[str(item["capacityProvider"])] += remaining * float(item.get("weight") or 0) / total_weight
    return split


def lookup(table: Mapping[str, float], key: str, what: str) -> float:
    try:
        return table[key]
    except KeyError:
        raise KeyError(f"no price for {what} {key!r} in infra/pricing.py; add it with its source") from None
