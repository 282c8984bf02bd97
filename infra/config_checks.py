"""The checks a stack's settings must pass before anything is deployed: each refuses settings that
would deploy something broken or unsafe, naming the key to change."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from infra.config import StackConfig, TaskSize


class ConfigError(ValueError):
    """A stack file value is missing or unsafe; the message names the key and how to fix it."""


# Fargate's valid (vCPU units -> memory MiB) pairs; a typo here otherwise fails at deploy time.
_FARGATE_MEMORY: dict[int, range] = {
    256: range(512, 2049, 512),
    512: range(1024, 4097, 1024),
    1024: range(2048, 8193, 1024),
    2048: range(4096, 16385, 1024),
    4096: range(8192, 30721, 1024),
    8192: range(16384, 61441, 4096),
    16384: range(32768, 122881, 8192),
}


# Names reserved for documentation and examples (RFC 2606, RFC 6761) and the account id of
# AWS's own documentation: a stack that still holds one was never filled in by its operator.
_PLACEHOLDER_DOMAINS = ("example", "test", "invalid", "localhost", "example.com", "example.net", "example.org")
_PLACEHOLDER_ACCOUNTS = ("123456789012", "000000000000")
_PLACEHOLDER_ID = re.compile(r"^[0-]+$")


def _placeholder_domain(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith(f".{d}") for d in _PLACEHOLDER_DOMAINS)


def _placeholder_certificate(arn: str) -> bool:
    parts = arn.split(":")
    if len(parts) < 6 or parts[:3] != ["arn", "aws", "acm"] or not parts[5].startswith("certificate/"):
        return True
    return parts[4] in _PLACEHOLDER_ACCOUNTS or bool(_PLACEHOLDER_ID.match(parts[5].split("/", 1)[1]))


def _validate_edge(config: StackConfig) -> None:
    lb = config.load_balancer
    if not lb.plain_http and not lb.certificate_arn and not (lb.hosted_zone_id and lb.domain_name):
        raise ConfigError(
            "prethrift:loadBalancer.certificateArn is required for HTTPS; set it to an ACM "
            "certificate ARN, or set hostedZoneId and domainName to have the stack issue one "
            "(DNS validation), or set loadBalancer.plainHttp: true to serve plain HTTP (dev only)"
        )
    if lb.certificate_arn and _placeholder_certificate(lb.certificate_arn):
        raise ConfigError(
            "prethrift:loadBalancer.certificateArn is a placeholder, not your certificate; set it to "
            "the ARN of your ACM certificate (arn:aws:acm:REGION:ACCOUNT:certificate/ID), or remove "
            "it and set hostedZoneId to issue one"
        )
    for key, host in (("domainName", lb.domain_name), ("consoleHost", lb.console_host)):
        if host and _placeholder_domain(host):
            raise ConfigError(
                f"prethrift:loadBalancer.{key} {host!r} is a reserved example name; set it to the "
                "host name you serve from (a name in your Route 53 zone)"
            )
    for cidr in lb.console_allowed_cidrs:
        try:
            network = ipaddress.ip_network(cidr)
        except ValueError:
            raise ConfigError(f"prethrift:loadBalancer.consoleAllowedCidrs has {cidr!r}, not a CIDR") from None
        if network.prefixlen == 0:
            raise ConfigError(
                "prethrift:loadBalancer.consoleAllowedCidrs must not hold 0.0.0.0/0 or ::/0: the "
                "console shows traffic and cost; list your office or VPN ranges"
            )
    if lb.console_auth == "cognito" and (lb.plain_http or not lb.console_host):
        raise ConfigError("prethrift:loadBalancer.consoleAuth: cognito needs HTTPS and a consoleHost")
    if lb.console_auth not in ("none", "cognito"):
        raise ConfigError("prethrift:loadBalancer.consoleAuth must be 'none' or 'cognito'")
    if lb.console_auth == "none" and not lb.console_allowed_cidrs:
        raise ConfigError(
            "the console needs a guard at the edge: set prethrift:loadBalancer.consoleAuth: cognito "
            "(HTTPS), or prethrift:loadBalancer.consoleAllowedCidrs to your office or VPN ranges"
        )


def _validate_alarms(config: StackConfig) -> None:
    obs = config.observability
    if obs.alarm_email and ("@" not in obs.alarm_email or _placeholder_domain(obs.alarm_email.split("@")[-1])):
        raise ConfigError("prethrift:observability.alarmEmail must be a real address that someone reads")
    if obs.alarm_https_endpoint and not obs.alarm_https_endpoint.startswith("https://"):
        raise ConfigError("prethrift:observability.alarmHttpsEndpoint must be an https:// URL")
    if config.app.environment == "production" and not (obs.alarm_email or obs.alarm_https_endpoint):
        raise ConfigError(
            "production alarms must reach a person: set prethrift:observability.alarmEmail or "
            "prethrift:observability.alarmHttpsEndpoint (a pager's webhook)"
        )


def validate(config: StackConfig) -> None:
    """Refuse settings that would deploy something broken or unsafe, naming the key to change."""
    _validate_edge(config)
    if not config.app.image_tag:
        raise ConfigError(
            "prethrift:imageTag is required: ECR tags are immutable, so every deploy names its "
            "image (CI passes the commit SHA; by hand: pulumi config set imageTag $(git rev-parse HEAD))"
        )
    digests = {"imageDigest": config.app.image_digest, "gpuImageDigest": config.app.gpu_image_digest}
    for key, digest in digests.items():
        if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
            raise ConfigError(f"prethrift:{key} must look like sha256:<64 hex digits>")
    _validate_alarms(config)
    if not 0.0 <= config.app.trace_sample_ratio <= 1.0:
        raise ConfigError("prethrift:app.traceSampleRatio must be between 0 and 1")
    if config.network.az_count < 2:
        raise ConfigError("prethrift:network.azCount must be at least 2 (ALB and RDS need two AZs)")
    if config.network.nat_gateways not in ("single", "per-az"):
        raise ConfigError("prethrift:network.natGateways must be 'single' or 'per-az'")
    if config.app.environment not in ("development", "staging", "production"):
        raise ConfigError("prethrift:app.environment must be development, staging or production")
    major = config.database.engine_version.split(".")[0]
    if not major.isdigit() or int(major) < 16:
        raise ConfigError("prethrift:database.engineVersion must be 16 or newer (pgvector >= 0.8)")
    if config.database.backup_retention_days < 7:
        raise ConfigError("prethrift:database.backupRetentionDays must be >= 7 (FSBP RDS.11)")
    if config.cache.nodes < 1 or config.cache.snapshot_retention_days < 1:
        raise ConfigError("prethrift:cache needs nodes >= 1 and snapshotRetentionDays >= 1")
    for name in ("api", "worker", "console"):
        size: TaskSize = getattr(config, name)
        allowed = _FARGATE_MEMORY.get(size.cpu)
        if allowed is None or size.memory not in allowed:
            raise ConfigError(
                f"prethrift:{name} cpu={size.cpu} memory={size.memory} is not a Fargate size; "
                "see https://docs.aws.amazon.com/AmazonECS/latest/developerguide/fargate-tasks-services.html"
            )
        if not size.min_count <= size.desired_count <= size.max_count:
            raise ConfigError(f"prethrift:{name} needs minCount <= desiredCount <= maxCount")
    cap = config.capacity
    lb = config.load_balancer
    if not 10 <= lb.waf_photo_rate_limit <= lb.waf_rate_limit:
        # WAF's rate-based rules take limits from 10 up.
        raise ConfigError("prethrift:loadBalancer needs 10 <= wafPhotoRateLimit <= wafRateLimit")
    if config.storage.cdn_price_class not in ("PriceClass_100", "PriceClass_200", "PriceClass_All"):
        raise ConfigError(
            "prethrift:storage.cdnPriceClass must be PriceClass_100, PriceClass_200 or PriceClass_All"
        )
    if cap.fargate_weight + cap.spot_weight < 1:
        raise ConfigError("prethrift:capacity needs fargateWeight + spotWeight >= 1")
