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

SOURCE = "AWS public price list (aws.amazon.com/pricing), us-east-1 on-demand, 2026-06"
AS_OF = "2026-06"
HOURS_PER_MONTH = 730

# https://aws.amazon.com/fargate/pricing/ (Linux/x86)
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
# Fargate Spot is listed at up to 70% off and varies; the plan assumes the least favourable 50%.
FARGATE_SPOT_FACTOR = 0.5

# https://aws.amazon.com/rds/postgresql/pricing/ (Single-AZ; Multi-AZ doubles instance and storage)
RDS_POSTGRES_HOUR: dict[str, float] = {
    "db.t4g.micro": 0.01625,  # derived
    "db.t4g.small": 0.0325,  # derived
    "db.t4g.medium": 0.065,  # list
    "db.t4g.large": 0.13,  # derived
    "db.t4g.xlarge": 0.26,  # derived
}
RDS_MULTI_AZ_FACTOR = 2.0  # list: db.t4g.medium 0.065 Single-AZ, 0.130 Multi-AZ
RDS_GP3_GB_MONTH = 0.115  # list; Multi-AZ stores twice
# Backup storage up to the provisioned storage is free; beyond it, per GB-month (same page).
RDS_BACKUP_GB_MONTH = 0.095

# https://aws.amazon.com/elasticache/pricing/ (node-based)
ELASTICACHE_NODE_HOUR: dict[str, float] = {
    "cache.t3.micro": 0.017,  # derived
    "cache.t3.small": 0.034,  # derived
    "cache.t3.medium": 0.068,  # list
    "cache.t4g.micro": 0.016,  # list
    "cache.t4g.small": 0.032,  # list
    "cache.t4g.medium": 0.065,  # list
}
# AWS prices node-based Valkey 20% below Redis OSS (list, announced 2024-10).
VALKEY_FACTOR = 0.8

ALB_HOUR = 0.0225  # https://aws.amazon.com/elasticloadbalancing/pricing/
ALB_LCU_HOUR = 0.008
NAT_HOUR = 0.045  # https://aws.amazon.com/vpc/pricing/
NAT_GB = 0.045
PUBLIC_IPV4_HOUR = 0.005  # list: every public IPv4 address since 2024-02
S3_STANDARD_GB_MONTH = 0.023  # https://aws.amazon.com/s3/pricing/ (first 50 TB)
# https://aws.amazon.com/cloudwatch/pricing/ (standard log class): ingestion and storage.
LOGS_INGEST_GB = 0.50
LOGS_STORED_GB_MONTH = 0.03
# https://aws.amazon.com/ec2/pricing/on-demand/ (Data Transfer): out to the internet, first
# 10 TB/month (the 100 GB/month free allowance is ignored: it is shared by the whole account),
# and between Availability Zones in the same region, charged in each direction.
DATA_OUT_GB = 0.09
CROSS_AZ_GB_EACH_WAY = 0.01
ALARM_METRIC_MONTH = 0.10  # list: standard-resolution alarm, per metric it evaluates
ECR_GB_MONTH = 0.10  # list
KMS_KEY_MONTH = 1.00  # list: https://aws.amazon.com/kms/pricing/ (customer managed key, us-east-1)
COMPOSITE_ALARM_MONTH = 0.50  # list: https://aws.amazon.com/cloudwatch/pricing/ (us-east-1)

# Added 2026-12-03 from the pages named, us-east-1 (the lines the plan had left out).
# https://aws.amazon.com/cloudwatch/pricing/ : custom metrics, first 10,000 metrics a month.
CW_CUSTOM_METRIC_MONTH = 0.30
# Same page, Container Insights with enhanced observability for ECS, billed per observation (one
# metric value for one task or container at one minute). The price and the observations per
# container-minute are the plan's reading of that page: verify there before relying on them.
CONTAINER_INSIGHTS_PER_MILLION_OBSERVATIONS = 0.21
CONTAINER_INSIGHTS_OBSERVATIONS_PER_CONTAINER_MINUTE = 20
# https://aws.amazon.com/s3/pricing/ (Standard): PUT, COPY, POST, LIST per 1,000; GET per 1,000.
S3_PUT_PER_1000 = 0.005
S3_GET_PER_1000 = 0.0004
# https://aws.amazon.com/waf/pricing/ : per web ACL, per rule (a managed rule group counts as one;
# AWS's baseline groups carry no subscription), per million requests inspected.
WAF_WEB_ACL_MONTH = 5.00
WAF_RULE_MONTH = 1.00
WAF_PER_MILLION_REQUESTS = 0.60
# https://aws.amazon.com/cloudfront/pricing/ : data transfer out to the internet, first 10 TB a
# month in the United States, Mexico, Canada and Europe (the PriceClass_100 edges), HTTPS requests
# per 10,000 there; origin fetches from S3 cost nothing. The always-free tier (1 TB out and
# 10,000,000 requests a month) is per account: each stack file says what share of it it claims.
CLOUDFRONT_GB = 0.085
CLOUDFRONT_HTTPS_PER_10K = 0.01
CLOUDFRONT_FREE_GB = 1024.0
CLOUDFRONT_FREE_REQUESTS = 10_000_000.0
EC2_GPU_HOUR: dict[str, float] = {
    "g4dn.xlarge": 0.526,  # list
    "g5.xlarge": 1.006,  # list
    "g6.xlarge": 0.8048,  # list
}

# Resource types with no charge of their own (or none until used, like SNS).
FREE_TYPES = frozenset(
    {
        "aws:ec2/vpc:Vpc",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/routeTableAssociation:RouteTableAssociation",
        "aws:ec2/internetGateway:InternetGateway",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "aws:iam/role:Role",
        "aws:iam/rolePolicy:RolePolicy",
        "aws:iam/rolePolicyAttachment:RolePolicyAttachment",
        "aws:iam/instanceProfile:InstanceProfile",
        "aws:ssm/parameter:Parameter",
        "random:index/randomPassword:RandomPassword",
        "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
        "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "aws:s3/bucketVersioning:BucketVersioning",
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
        "aws:s3/bucketCorsConfiguration:BucketCorsConfiguration",
        "aws:s3/bucketPolicy:BucketPolicy",
        "aws:lb/targetGroup:TargetGroup",
        "aws:lb/listener:Listener",
        "aws:lb/listenerRule:ListenerRule",
        "aws:rds/subnetGroup:SubnetGroup",
        "aws:rds/parameterGroup:ParameterGroup",
        "aws:elasticache/subnetGroup:SubnetGroup",
        "aws:ecs/cluster:Cluster",
        "aws:ecs/clusterCapacityProviders:ClusterCapacityProviders",
        "aws:ecs/taskDefinition:TaskDefinition",
        "aws:ecs/capacityProvider:CapacityProvider",
        "aws:appautoscaling/target:Target",
        "aws:appautoscaling/policy:Policy",
        "aws:ec2/launchTemplate:LaunchTemplate",
        "aws:ecr/lifecyclePolicy:LifecyclePolicy",
        "docker-build:index:Image",
        "aws:sns/topic:Topic",
        "aws:sns/topicSubscription:TopicSubscription",
        "aws:route53/record:Record",
        "aws:kms/alias:Alias",
        "aws:sns/topicPolicy:TopicPolicy",
        # Public ACM certificates are free: https://aws.amazon.com/certificate-manager/pricing/
        "aws:acm/certificate:Certificate",
        "aws:acm/certificateValidation:CertificateValidation",
        # Cognito: the first 10,000 monthly active users are free (a handful of operators here).
        "aws:cognito/userPool:UserPool",
        "aws:cognito/userPoolClient:UserPoolClient",
        "aws:cognito/userPoolDomain:UserPoolDomain",
        # Priced by usage (transfer and requests): the image-downloads line.
        "aws:cloudfront/distribution:Distribution",
        "aws:cloudfront/originAccessControl:OriginAccessControl",
        "aws:wafv2/webAclAssociation:WebAclAssociation",
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
