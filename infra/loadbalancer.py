"""Load balancer layer: a public ALB in front of the API and the ops console.

HTTPS with the stack's ACM certificate and an HTTP->HTTPS redirect; plain HTTP only when the
stack file says `loadBalancer.plainHttp: true`. The console is routed by its own host name,
or, without one, by its own listener port."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import LoadBalancerConfig
from infra.ports import API_PORT, CONSOLE_PORT

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"


@dataclass(frozen=True)
class LoadBalancerArgs:
    config: LoadBalancerConfig
    name_prefix: str
    vpc_id: pulumi.Output[str]
    subnet_ids: list[pulumi.Output[str]]
    security_group_id: pulumi.Output[str]
    logs_bucket: pulumi.Output[str]
    logs_prefix: str
    logs_ready: list[pulumi.Resource]


class LoadBalancer(pulumi.ComponentResource):
    """ALB, listeners and the target groups of the API and console services."""

    arn_suffix: pulumi.Output[str]
    api_target_group_arn: pulumi.Output[str]
    api_target_group_arn_suffix: pulumi.Output[str]
    console_target_group_arn: pulumi.Output[str]
    listeners: list[aws.lb.Listener]
    url: pulumi.Output[str]
    console_url: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        scheme = "http" if cfg.plain_http else "https"

        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            desync_mitigation_mode="defensive",
            enable_deletion_protection=cfg.deletion_protection,
            idle_timeout=60,
            access_logs={"bucket": args.logs_bucket, "prefix": args.logs_prefix, "enabled": True},
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.logs_ready),
        )
        api_tg = self._target_group(f"{name}-api", args.vpc_id, API_PORT, "/readyz", "200")
        # The console answers 401 until the operator logs in; that still proves it is up.
        console_tg = self._target_group(f"{name}-console", args.vpc_id, CONSOLE_PORT, "/", "200,302,401")

        forward_api: Any = [{"type": "forward", "target_group_arn": api_tg.arn}]
        forward_console: Any = [{"type": "forward", "target_group_arn": console_tg.arn}]
        listeners: list[aws.lb.Listener] = []
        if cfg.plain_http:
            front = aws.lb.Listener(
                f"{name}-http",
                load_balancer_arn=alb.arn,
                port=80,
                protocol="HTTP",
                default_actions=forward_api,
                opts=child,
            )
            listeners.append(front)
        else:
            listeners.append(
                aws.lb.Listener(
                    f"{name}-http-redirect",
                    load_balancer_arn=alb.arn,
                    port=80,
                    protocol="HTTP",
                    default_actions=[
                        {
                            "type": "redirect",
                            "redirect": {"protocol": "HTTPS", "port": "443", "status_code": "HTTP_301"},
                        }
                    ],
                    opts=child,
                )
            )
            front = aws.lb.Listener(
                f"{name}-https",
                load_balancer_arn=alb.arn,
                port=443,
                protocol="HTTPS",
                certificate_arn=cfg.certificate_arn,
                ssl_policy=TLS_POLICY,
                default_actions=forward_api,
                opts=child,
            )
            listeners.append(front)

        if cfg.console_host:
            aws.lb.ListenerRule(
                f"{name}-console-host",
                listener_arn=front.arn,
                priority=10,
                conditions=[{"host_header": {"values": [cfg.console_host]}}],
                actions=forward_console,
                opts=child,
            )
            self.console_url = pulumi.Output.from_input(f"{scheme}://{cfg.console_host}")
        else:
            listeners.append(
                aws.lb.Listener(
                    f"{name}-console",
                    load_balancer_arn=alb.arn,
                    port=cfg.console_port,
                    protocol="HTTP" if cfg.plain_http else "HTTPS",
                    certificate_arn=None if cfg.plain_http else cfg.certificate_arn,
                    ssl_policy=None if cfg.plain_http else TLS_POLICY,
                    default_actions=forward_console,
                    opts=child,
                )
            )
            self.console_url = alb.dns_name.apply(lambda dns: f"{scheme}://{dns}:{cfg.console_port}")

        if cfg.hosted_zone_id:
            for host in filter(None, (cfg.domain_name, cfg.console_host)):
                aws.route53.Record(
                    f"{name}-{host.split('.')[0]}-alias",
                    zone_id=cfg.hosted_zone_id,
                    name=host,
                    type="A",
                    aliases=[{"name": alb.dns_name, "zone_id": alb.zone_id, "evaluate_target_health": True}],
                    opts=child,
                )

        self.url = (
            pulumi.Output.from_input(f"{scheme}://{cfg.domain_name}")
            if cfg.domain_name
            else alb.dns_name.apply(lambda dns: f"{scheme}://{dns}")
        )
        self.arn_suffix = alb.arn_suffix
        self.api_target_group_arn = api_tg.arn
        self.api_target_group_arn_suffix = api_tg.arn_suffix
        self.console_target_group_arn = console_tg.arn
        self.listeners = listeners
        self.register_outputs({"url": self.url, "console_url": self.console_url})

    def _target_group(
        self, name: str, vpc_id: pulumi.Output[str], port: int, path: str, matcher: str
    ) -> aws.lb.TargetGroup:
        return aws.lb.TargetGroup(
            name,
            vpc_id=vpc_id,
            port=port,
            protocol="HTTP",
            target_type="ip",
            deregistration_delay=30,
            health_check={
                "path": path,
                "matcher": matcher,
                "interval": 15,
                "timeout": 5,
                "healthy_threshold": 2,
                "unhealthy_threshold": 3,
            },
            opts=pulumi.ResourceOptions(parent=self),
        )
