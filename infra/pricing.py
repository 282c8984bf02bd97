"""The price table of the offline plan, and the rules that turn a resource into a monthly cost.

Source: AWS us-east-1 on-demand prices as summarised in shared/FACTS.md ("third-party
summaries, Mar-Jun 2026"). Prices marked `derived` scale a FACTS price by AWS's size ratio
within the instance family (each size up doubles the price); prices marked `list` are not in
FACTS and are AWS list prices as of 2026-06 that nobody re-checked here. Check before relying.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SOURCE = "AWS us-east-1 on-demand, per shared/FACTS.md (third-party summaries, Mar-Jun 2026)"
AS_OF = "2026-06"
HOURS_PER_MONTH = 730

FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445
# FACTS: Spot is "usually 50-70% off"; the plan assumes the least favourable 50%.
FARGATE_SPOT_FACTOR = 0.5

RDS_POSTGRES_HOUR: dict[str, float] = {
    "db.t4g.micro": 0.01625,  # derived
    "db.t4g.small": 0.0325,  # derived
    "db.t4g.medium": 0.065,  # FACTS
    "db.t4g.large": 0.13,  # derived
    "db.t4g.xlarge": 0.26,  # derived
}
RDS_MULTI_AZ_FACTOR = 2.0  # FACTS: 0.065 single-AZ, 0.130 Multi-AZ
RDS_GP3_GB_MONTH = 0.115  # FACTS; Multi-AZ stores twice

ELASTICACHE_NODE_HOUR: dict[str, float] = {
    "cache.t3.micro": 0.017,  # derived
    "cache.t3.small": 0.034,  # derived
    "cache.t3.medium": 0.068,  # FACTS
    "cache.t4g.micro": 0.016,  # list
    "cache.t4g.small": 0.032,  # list
    "cache.t4g.medium": 0.065,  # list
}
# AWS prices node-based Valkey 20% below Redis OSS (list, announced 2024-10).
VALKEY_FACTOR = 0.8

ALB_HOUR = 0.0225
ALB_LCU_HOUR = 0.008
NAT_HOUR = 0.045
NAT_GB = 0.045
PUBLIC_IPV4_HOUR = 0.005  # list: every public IPv4 address since 2024-02
S3_STANDARD_GB_MONTH = 0.023
LOGS_INGEST_GB = 0.50
ALARM_METRIC_MONTH = 0.10  # list: standard-resolution alarm, per metric it evaluates
ECR_GB_MONTH = 0.10  # list
KMS_KEY_MONTH = 1.00  # list: https://aws.amazon.com/kms/pricing/ (customer managed key, us-east-1)
COMPOSITE_ALARM_MONTH = 0.50  # list: https://aws.amazon.com/cloudwatch/pricing/ (us-east-1)
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

    @classmethod
    def from_config(cls, raw: Mapping[str, Any] | None) -> Usage:
        raw = raw or {}
        names = {
            "albLcu": "alb_lcu",
            "natDataGb": "nat_data_gb",
            "logsIngestGb": "logs_ingest_gb",
            "imagesGb": "images_gb",
            "ecrStorageGb": "ecr_storage_gb",
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
