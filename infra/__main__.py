"""Pulumi entry point (`main: infra/` in Pulumi.yaml): wiring of the layers, nothing else.

`pulumi up` runs this file; the offline plan and the tests run the same file under mocks
(infra/mocks.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# Pulumi runs this file by path; let `import infra` resolve without an installed package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pulumi
import pulumi_aws as aws

from infra import config as stack_config
from infra.bootstrap.boundary import apply_boundary
from infra.cache import Cache, CacheArgs
from infra.database import Database, DatabaseArgs
from infra.loadbalancer import LoadBalancer, LoadBalancerArgs
from infra.network import Network, NetworkArgs
from infra.observability import Alarms, AlarmsArgs, Logs, LogsArgs
from infra.parameters import Parameters, ParametersArgs
from infra.registry import Registry, RegistryArgs
from infra.service import Services, ServicesArgs
from infra.storage import Storage, StorageArgs
from infra.waf import Waf, WafArgs

ALB_LOG_PREFIX = "alb"


def main() -> None:
    """Declare every resource of the current stack and export its outputs."""
    cfg = stack_config.load()
    prefix = cfg.name_prefix
    region = aws.get_region().region
    # The deploy role only creates roles that carry this boundary (infra/bootstrap).
    apply_boundary(aws.get_caller_identity().account_id, cfg.stack)
    lb_cfg = cfg.load_balancer
    console_port = None if lb_cfg.console_host else lb_cfg.console_port

    network = Network(
        "network",
        NetworkArgs(
            cfg.network,
            prefix,
            console_port,
            lb_cfg.console_allowed_cidrs,
            sign_in_at_edge=lb_cfg.console_auth == "cognito",
        ),
    )
    storage = Storage(
        "storage",
        StorageArgs(cfg.storage, prefix, lb_cfg.access_log_days, ALB_LOG_PREFIX),
    )
    database = Database(
        "database",
        DatabaseArgs(cfg.database, prefix, network.private_subnet_ids, network.database_sg_id),
    )
    cache = Cache("cache", CacheArgs(cfg.cache, prefix, network.private_subnet_ids, network.cache_sg_id))
    secrets = Parameters(
        "secrets",
        ParametersArgs(
            f"/prethrift/{cfg.stack}/",
            database.url,
            cache.url,
            sentry_dsn=stack_config.sentry_dsn(),
            shopify_webhook_secret=stack_config.shopify_webhook_secret(),
            database_read_url=database.read_url,
        ),
    )
    registry = Registry(
        "registry",
        RegistryArgs(
            prefix,
            str(cfg.app.image_tag),
            cfg.app.image_digest,
            gpu_image=cfg.gpu_worker.enabled,
            gpu_image_digest=cfg.app.gpu_image_digest,
        ),
    )
    lb = LoadBalancer(
        "edge",
        LoadBalancerArgs(
            lb_cfg,
            prefix,
            network.vpc_id,
            network.public_subnet_ids,
            network.alb_sg_id,
            storage.logs_bucket_name,
            ALB_LOG_PREFIX,
            storage.logs_ready,
        ),
    )
    Waf("waf", WafArgs(prefix, lb.arn, lb_cfg.waf_rate_limit, lb_cfg.waf_photo_rate_limit))
    programs = ("api", "worker", "console") + (("gpu-worker",) if cfg.gpu_worker.enabled else ())
    logs = Logs("logs", LogsArgs(cfg.observability, prefix, (*programs, "otel", "metrics")))
    services = Services(
        "services",
        ServicesArgs(
            name_prefix=prefix,
            stack=cfg.stack,
            app=cfg.app,
            capacity=cfg.capacity,
            api=cfg.api,
            worker=cfg.worker,
            console=cfg.console,
            gpu_worker=cfg.gpu_worker,
            image_ref=registry.image_ref,
            gpu_image_ref=registry.gpu_image_ref,
            repository_arn=registry.repository_arn,
            subnet_ids=network.private_subnet_ids,
            tasks_security_group_id=network.tasks_sg_id,
            api_target_group_arn=lb.api_target_group_arn,
            console_target_group_arn=lb.console_target_group_arn,
            alb_arn_suffix=lb.arn_suffix,
            api_target_group_arn_suffix=lb.api_target_group_arn_suffix,
            listeners=lb.listeners,
            console_route=lb.console_route,
            images_bucket_name=storage.images_bucket_name,
            images_bucket_arn=storage.images_bucket_arn,
            images_cdn_url=storage.images_cdn_url,
            secret_arns=secrets.parameter_arns,
            ssm_path_arn=secrets.path_arn,
            log_groups=logs.group_names,
            log_group_arns=logs.group_arns,
            region=region,
        ),
    )
    Alarms(
        "alarms",
        AlarmsArgs(
            cfg.observability,
            prefix,
            lb.arn_suffix,
            lb.api_target_group_arn_suffix,
            services.cluster_name,
            services.service_names,
        ),
    )

    pulumi.export("url", lb.url)
    pulumi.export("console_url", lb.console_url)
    pulumi.export("images_bucket", storage.images_bucket_name)
    pulumi.export("images_cdn_url", storage.images_cdn_url)
    pulumi.export("repository_url", registry.repository_url)
    pulumi.export("image_ref", registry.image_ref)
    # What is deployed, for previews: they pass these back so that a pull request's preview
    # shows its own changes, not every task definition replaced by an image it never built.
    pulumi.export("image_tag", str(cfg.app.image_tag))
    pulumi.export("image_digest", cfg.app.image_digest or "")
    pulumi.export("gpu_image_digest", cfg.app.gpu_image_digest or "")
    pulumi.export("cluster", services.cluster_name)
    pulumi.export("services", services.service_names)
    pulumi.export("ssm_prefix", f"/prethrift/{cfg.stack}/")


main()
