"""Cache layer: an ElastiCache (Valkey) replication group, TLS and AUTH on, in private subnets."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.config import CacheConfig


@dataclass(frozen=True)
class CacheArgs:
    config: CacheConfig
    name_prefix: str
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Output[str]


class Cache(pulumi.ComponentResource):
    """Encrypted at rest and in transit; automatic failover once there are two nodes."""

    url: pulumi.Output[str]
    """REDIS_URL, a secret: it carries the AUTH token."""

    def __init__(self, name: str, args: CacheArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Cache", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        multi_node = cfg.nodes >= 2

        # AUTH tokens accept printable ASCII except @ " /; letters and digits keep the URL plain.
        token = random.RandomPassword(f"{name}-auth-token", length=48, special=False, opts=child)
        subnets = aws.elasticache.SubnetGroup(
            f"{name}-subnets",
            description=f"{args.name_prefix} cache subnets",
            subnet_ids=args.subnet_ids,
            opts=child,
        )
        group = aws.elasticache.ReplicationGroup(
            f"{name}-valkey",
            description=f"{args.name_prefix} cache and job queue",
            engine=cfg.engine,
            engine_version=cfg.engine_version,
            node_type=cfg.node_type,
            num_cache_clusters=cfg.nodes,
            automatic_failover_enabled=multi_node,
            multi_az_enabled=multi_node,
            at_rest_encryption_enabled=True,
            transit_encryption_enabled=True,
            auth_token=token.result,
            subnet_group_name=subnets.name,
            security_group_ids=[args.security_group_id],
            snapshot_retention_limit=cfg.snapshot_retention_days,
            snapshot_window="02:00-03:00",
            maintenance_window="sun:05:30-sun:06:30",
            auto_minor_version_upgrade=True,
            port=6379,
            opts=child,
        )
        self.url = pulumi.Output.secret(
            pulumi.Output.format("rediss://:{0}@{1}:6379/0", token.result, group.primary_endpoint_address)
        )
        self.register_outputs({"primary_endpoint": group.primary_endpoint_address})
