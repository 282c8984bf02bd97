"""Database layer: RDS PostgreSQL (16+, which offers pgvector) in the private subnets.

The app's migrations run `CREATE EXTENSION vector`; nothing here needs to preload it."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_random as random

from infra.config import DatabaseConfig


@dataclass(frozen=True)
class DatabaseArgs:
    config: DatabaseConfig
    name_prefix: str
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Output[str]


class Database(pulumi.ComponentResource):
    """A private, encrypted PostgreSQL instance with a generated master password."""

    url: pulumi.Output[str]
    """DATABASE_URL, a secret: it carries the password."""
    read_url: pulumi.Output[str] | None
    """DATABASE_READ_URL (a secret), every read replica's host in one DSN; None without replicas."""
    instance_id: pulumi.Output[str]

    def __init__(self, name: str, args: DatabaseArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:Database", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        major = cfg.engine_version.split(".")[0]

        # Letters and digits only, so the password needs no escaping inside DATABASE_URL.
        password = random.RandomPassword(f"{name}-password", length=40, special=False, opts=child)
        subnets = aws.rds.SubnetGroup(f"{name}-subnets", subnet_ids=args.subnet_ids, opts=child)
        parameters = aws.rds.ParameterGroup(
            f"{name}-params",
            family=f"postgres{major}",
            description=f"{args.name_prefix} PostgreSQL {major}",
            parameters=[
                {"name": "rds.force_ssl", "value": "1"},
                {"name": "log_min_duration_statement", "value": "500"},
                {
                    "name": "shared_preload_libraries",
                    "value": "pg_stat_statements",
                    "apply_method": "pending-reboot",
                },
            ],
            opts=child,
        )
        instance = aws.rds.Instance(
            f"{name}-postgres",
            engine="postgres",
            engine_version=cfg.engine_version,
            instance_class=cfg.instance_class,
            allocated_storage=cfg.allocated_storage_gb,
            max_allocated_storage=cfg.max_allocated_storage_gb,
            storage_type="gp3",
            storage_encrypted=True,
            db_name="prethrift",
            username="prethrift",
            password=password.result,
            db_subnet_group_name=subnets.name,
            parameter_group_name=parameters.name,
            vpc_security_group_ids=[args.security_group_id],
            publicly_accessible=False,
            multi_az=cfg.multi_az,
            deletion_protection=cfg.deletion_protection,
            backup_retention_period=cfg.backup_retention_days,
            backup_window="03:00-04:00",
            maintenance_window="sun:04:30-sun:05:30",
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            copy_tags_to_snapshot=True,
            performance_insights_enabled=True,
            performance_insights_retention_period=7,
            enabled_cloudwatch_logs_exports=["postgresql", "upgrade"],
            skip_final_snapshot=cfg.skip_final_snapshot,
            final_snapshot_identifier=None if cfg.skip_final_snapshot else f"{args.name_prefix}-final",
            apply_immediately=False,
            opts=child,
        )
        replicas = [
            aws.rds.Instance(
                f"{name}-replica-{index + 1}",
                # A replica takes its engine, database, credentials and encryption from the source.
                replicate_source_db=instance.identifier,
                instance_class=cfg.instance_class,
                allocated_storage=cfg.allocated_storage_gb,
                max_allocated_storage=cfg.max_allocated_storage_gb,
                storage_type="gp3",
                storage_encrypted=True,
                parameter_group_name=parameters.name,
                vpc_security_group_ids=[args.security_group_id],
                publicly_accessible=False,
                multi_az=False,
                # Backups come from the source; a replica is rebuilt from it, never restored.
                backup_retention_period=0,
                skip_final_snapshot=True,
                auto_minor_version_upgrade=True,
                performance_insights_enabled=True,
                performance_insights_retention_period=7,
                enabled_cloudwatch_logs_exports=["postgresql"],
                deletion_protection=cfg.deletion_protection,
                apply_immediately=False,
                opts=child,
            )
            for index in range(cfg.read_replicas)
        ]
        self.read_url = None
        if replicas:
            hosts = pulumi.Output.all(*[pulumi.Output.format("{0}:{1}", r.address, r.port) for r in replicas])
            self.read_url = pulumi.Output.secret(
                pulumi.Output.format(
                    "postgresql://prethrift:{0}@{1}/prethrift?sslmode=require",
                    password.result,
                    hosts.apply(",".join),
                )
            )
        self.instance_id = instance.identifier
        self.url = pulumi.Output.secret(
            pulumi.Output.format(
                "postgresql://prethrift:{0}@{1}:{2}/prethrift?sslmode=require",
                password.result,
                instance.address,
                instance.port,
            )
        )
        self.register_outputs({"instance_id": instance.identifier, "endpoint": instance.address})
