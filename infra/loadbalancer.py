"""Load balancer layer: a public ALB in front of the API and the ops console.

HTTPS with the stack's ACM certificate and an HTTP->HTTPS redirect; plain HTTP only when the
stack file says `loadBalancer.plainHttp: true`. The console is routed by its own host name,
or, without one, by its own listener port."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from infra.config import LoadBalancerConfig
from infra.ports import API_PORT, CONSOLE_PORT

TLS_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"
# The API closes a suggestion socket idle this long (PRETHRIFT_LIMITS_WS_IDLE_S, set on its
# container); the ALB keeps idle connections a minute longer, so the app's close (a frame the page
# reconnects on) always comes first and the ALB never cuts a socket silently.
WEBSOCKET_IDLE_S = 120.0
IDLE_TIMEOUT_S = int(WEBSOCKET_IDLE_S) + 60
# The API's check: ready once (model loaded, catalog embedded), then up for good, so a database
# failover does not fail every target at once and have ECS replace them all (webapp/app.py).
API_HEALTH_PATH = "/startedz"


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

    arn: pulumi.Output[str]
    arn_suffix: pulumi.Output[str]
    api_target_group_arn: pulumi.Output[str]
    api_target_group_arn_suffix: pulumi.Output[str]
    console_target_group_arn: pulumi.Output[str]
    listeners: list[aws.lb.Listener]
    console_route: list[pulumi.Resource]
    """What forwards to the console: its service waits for it (create) and outlives it (destroy)."""
    url: pulumi.Output[str]
    console_url: pulumi.Output[str]

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("prethrift:infra:LoadBalancer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        cfg = args.config
        scheme = "http" if cfg.plain_http else "https"

        alb = aws.lb.LoadBalancer(
            f"{name}-alb",
            # Named after the stack: WAF authorizes attaching a web ACL against the load balancer's
            # ARN with no tag condition, so the deploy role can only be fenced to its stack by name.
            name=f"{args.name_prefix}-alb",
            load_balancer_type="application",
            internal=False,
            subnets=args.subnet_ids,
            security_groups=[args.security_group_id],
            drop_invalid_header_fields=True,
            desync_mitigation_mode="defensive",
            enable_deletion_protection=cfg.deletion_protection,
            idle_timeout=IDLE_TIMEOUT_S,
            access_logs={"bucket": args.logs_bucket, "prefix": args.logs_prefix, "enabled": True},
            opts=pulumi.ResourceOptions(parent=self, depends_on=args.logs_ready),
        )
        api_tg = self._target_group(f"{name}-api", args.vpc_id, API_PORT, API_HEALTH_PATH, "200")
        # The console answers 401 until the operator logs in; that still proves it is up.
        console_tg = self._target_group(f"{name}-console", args.vpc_id, CONSOLE_PORT, "/", "200,302,401")

        certificate_arn = self._certificate(name, cfg)
        forward_api: Any = [{"type": "forward", "target_group_arn": api_tg.arn}]
        auth = self._console_auth(name, cfg)
        forward_console: Any = [
            *auth,
            {"type": "forward", "target_group_arn": console_tg.arn, **({"order": 2} if auth else {})},
        ]
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
                certificate_arn=certificate_arn,
                ssl_policy=TLS_POLICY,
                default_actions=forward_api,
                opts=child,
            )
            listeners.append(front)

        # Prometheus metrics are scraped on loopback by each task's collector, never from outside.
        aws.lb.ListenerRule(
            f"{name}-no-public-metrics",
            listener_arn=front.arn,
            priority=1,
            conditions=[{"path_pattern": {"values": ["/metrics", "/metrics/*"]}}],
            actions=[
                {
                    "type": "fixed-response",
                    "fixed_response": {
                        "content_type": "application/json",
                        "status_code": "404",
                        "message_body": json.dumps({"error": {"code": "not_found", "message": "Not found."}}),
                    },
                }
            ],
            opts=child,
        )
        if cfg.console_host:
            conditions: Any = [{"host_header": {"values": [cfg.console_host]}}]
            if cfg.console_allowed_cidrs:
                conditions.append({"source_ip": {"values": list(cfg.console_allowed_cidrs)}})
            rule = aws.lb.ListenerRule(
                f"{name}-console-host",
                listener_arn=front.arn,
                priority=10,
                conditions=conditions,
                actions=forward_console,
                opts=child,
            )
            self.console_route = [rule]
            self.console_url = pulumi.Output.from_input(f"{scheme}://{cfg.console_host}")
        else:
            # Its own port, open only to consoleAllowedCidrs in the ALB's security group.
            console_listener = aws.lb.Listener(
                f"{name}-console",
                load_balancer_arn=alb.arn,
                port=cfg.console_port,
                protocol="HTTP" if cfg.plain_http else "HTTPS",
                certificate_arn=None if cfg.plain_http else certificate_arn,
                ssl_policy=None if cfg.plain_http else TLS_POLICY,
                default_actions=forward_console,
                opts=child,
            )
            listeners.append(console_listener)
            self.console_route = [console_listener]
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
        self.arn = alb.arn
        self.arn_suffix = alb.arn_suffix
        self.api_target_group_arn = api_tg.arn
        self.api_target_group_arn_suffix = api_tg.arn_suffix
        self.console_target_group_arn = console_tg.arn
        self.listeners = listeners
        self.register_outputs({"url": self.url, "console_url": self.console_url})

    def _certificate(self, name: str, cfg: LoadBalancerConfig) -> pulumi.Input[str] | None:
        """The stack's certificate ARN, or one issued by ACM and validated through Route 53 DNS."""
        if cfg.plain_http or cfg.certificate_arn or not (cfg.hosted_zone_id and cfg.domain_name):
            return cfg.certificate_arn
        child = pulumi.ResourceOptions(parent=self)
        hosts = [h for h in (cfg.domain_name, cfg.console_host) if h]
        cert = aws.acm.Certificate(
            f"{name}-certificate",
            domain_name=hosts[0],
            subject_alternative_names=hosts[1:],
            validation_method="DNS",
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=False),
        )

        def option_for(host: str) -> pulumi.Output[Any]:
            return cert.domain_validation_options.apply(
                lambda options: next(o for o in options if o.domain_name == host)
            )

        records = []
        for host in hosts:
            option = option_for(host)
            records.append(
                aws.route53.Record(
                    f"{name}-{host.split('.')[0]}-validation",
                    zone_id=cfg.hosted_zone_id,
                    name=option.apply(lambda o: str(o.resource_record_name)),
                    type=option.apply(lambda o: str(o.resource_record_type)),
                    records=[option.apply(lambda o: str(o.resource_record_value))],
                    ttl=300,
                    allow_overwrite=True,
                    opts=child,
                )
            )
        validation = aws.acm.CertificateValidation(
            f"{name}-certificate-validation",
            certificate_arn=cert.arn,
            validation_record_fqdns=[r.fqdn for r in records],
            opts=child,
        )
        return validation.certificate_arn

    def _console_auth(self, name: str, cfg: LoadBalancerConfig) -> list[Any]:
        """`consoleAuth: cognito`: a user pool whose operators the ALB signs in before forwarding
        (https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html)."""
        if cfg.console_auth != "cognito" or not cfg.console_host:
            return []
        child = pulumi.ResourceOptions(parent=self)
        pool = aws.cognito.UserPool(
            f"{name}-console-users",
            admin_create_user_config={"allow_admin_create_user_only": True},
            mfa_configuration="ON",
            software_token_mfa_configuration={"enabled": True},
            password_policy={
                "minimum_length": 14,
                "require_lowercase": True,
                "require_uppercase": True,
                "require_numbers": True,
                "require_symbols": True,
            },
            deletion_protection="ACTIVE" if cfg.deletion_protection else "INACTIVE",
            opts=child,
        )
        domain = aws.cognito.UserPoolDomain(
            f"{name}-console-login",
            domain=f"{cfg.console_host.split('.')[0]}-{pulumi.get_stack()}-login",
            user_pool_id=pool.id,
            opts=child,
        )
        client = aws.cognito.UserPoolClient(
            f"{name}-console-client",
            user_pool_id=pool.id,
            generate_secret=True,
            allowed_oauth_flows_user_pool_client=True,
            allowed_oauth_flows=["code"],
            allowed_oauth_scopes=["openid", "email"],
            callback_urls=[f"https://{cfg.console_host}/oauth2/idpresponse"],
            supported_identity_providers=["COGNITO"],
            opts=child,
        )
        return [
            {
                "type": "authenticate-cognito",
                "order": 1,
                "authenticate_cognito": {
                    "user_pool_arn": pool.arn,
                    "user_pool_client_id": client.id,
                    "user_pool_domain": domain.domain,
                    "on_unauthenticated_request": "authenticate",
                    "session_timeout": 28800,
                },
            }
        ]

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
