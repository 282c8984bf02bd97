"""The stack's settings, read once from `Pulumi.<stack>.yaml` into typed, validated objects.

Every difference between dev and prod lives in the stack file; modules receive these objects
and never look at the stack name.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

NatStrategy = Literal["single", "per-az"]

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


class ConfigError(ValueError):
    """A stack file value is missing or unsafe; the message names the key and how to fix it."""


@dataclass(frozen=True)
class NetworkConfig:
    cidr: str = "10.0.0.0/16"
    az_count: int = 2
    nat_gateways: NatStrategy = "single"


@dataclass(frozen=True)
class LoadBalancerConfig:
    plain_http: bool = False
    certificate_arn: str | None = None
    domain_name: str | None = None
    console_host: str | None = None
    console_port: int = 8443
    deletion_protection: bool = True
    access_log_days: int = 90
    hosted_zone_id: str | None = None
    """Route 53 zone of `domainName`/`consoleHost`: alias records, and (without a
    `certificateArn`) an ACM certificate validated through DNS in that zone."""
    console_auth: Literal["none", "cognito"] = "none"
    """`cognito`: the ALB signs operators in (a Cognito user pool) before it forwards to the
    console. Needs HTTPS and `consoleHost`."""
    console_allowed_cidrs: tuple[str, ...] = ()
    """Source addresses that may reach the console through the ALB; never 0.0.0.0/0."""
    waf_rate_limit: int = 3000
    """AWS WAF blocks a client address past this many requests in 5 minutes (10 a second on
    average): a flood stops at the edge, before the app's own per-client limits spend a task on it."""
    waf_photo_rate_limit: int = 300
    """The same for photo search and uploads (POST /api/search/image, POST /api/items), which
    decode an image and run the model: one a second on average per address."""


@dataclass(frozen=True)
class DatabaseConfig:
    instance_class: str = "db.t4g.medium"
    engine_version: str = "16"
    allocated_storage_gb: int = 20
    max_allocated_storage_gb: int = 100
    multi_az: bool = True
    deletion_protection: bool = True
    backup_retention_days: int = 7
    skip_final_snapshot: bool = False


@dataclass(frozen=True)
class CacheConfig:
    node_type: str = "cache.t4g.small"
    engine: str = "valkey"
    engine_version: str = "8.0"
    nodes: int = 2
    snapshot_retention_days: int = 1


@dataclass(frozen=True)
class TaskSize:
    cpu: int = 1024
    memory: int = 3072
    desired_count: int = 1
    min_count: int = 1
    max_count: int = 2
    requests_per_target: int = 570
    """ALB requests per task per minute that the API's autoscaling aims for (2-vCPU task).

    About 70% of the load a task carries with an open-loop p99 near 150 ms: uncached searches
    held that up to 13.75 a second on the bench, PostgreSQL sharing the same two cores
    (infra/README.md, capacity notes; re-measure with ``python -m bench.capacity``).
    """


@dataclass(frozen=True)
class CapacityStrategy:
    """How tasks split between on-demand FARGATE and FARGATE_SPOT (base tasks go on-demand)."""

    fargate_base: int = 1
    fargate_weight: int = 1
    spot_weight: int = 0


@dataclass(frozen=True)
class GpuWorkerConfig:
    """The optional GPU embedding worker on an EC2 capacity provider (Fargate has no GPUs)."""

    enabled: bool = False
    instance_type: str = "g5.xlarge"
    min_instances: int = 0
    max_instances: int = 1
    desired_count: int = 1
    cpu: int = 3072
    memory: int = 12288


@dataclass(frozen=True)
class ObservabilityConfig:
    log_retention_days: int = 30
    p99_latency_seconds: float = 1.0
    error_rate_percent: float = 5.0
    cpu_percent: float = 80.0
    alarm_email: str | None = None
    alarm_https_endpoint: str | None = None
    """An HTTPS endpoint (a pager's webhook) subscribed to the alarm topic."""


@dataclass(frozen=True)
class StorageConfig:
    cors_origins: tuple[str, ...] = ()
    noncurrent_version_days: int = 30
    force_destroy: bool = False
    cdn_price_class: str = "PriceClass_100"
    """CloudFront's edge locations for the photos: PriceClass_100 (North America and Europe) is the
    cheapest; shoppers elsewhere are served from the nearest of those."""


@dataclass(frozen=True)
class AppConfig:
    environment: str = "production"
    log_level: str = "INFO"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str = "laion2b_s34b_b79k"
    image_tag: str | None = None
    """The image tag to deploy; required by `pulumi up` (CI sets the commit), see registry.py."""
    image_digest: str | None = None
    """`sha256:...` of an image already pushed to this stack's repository (CI's build job):
    the tasks run exactly that image and the program builds nothing."""
    gpu_image_digest: str | None = None
    """`sha256:...` of the CUDA variant CI pushed as `<imageTag>-gpu` (gpuWorker only)."""
    trace_sample_ratio: float = 0.1
    """OTEL_TRACES_SAMPLER_ARG: the share of requests traced (X-Ray bills per trace)."""


@dataclass(frozen=True)
class SearchLogConfig:
    """The search log behind the console's Demand page (webapp/analytics)."""

    raw_retention_days: int = 30
    """Days raw searches and clicks are kept (PRETHRIFT_ANALYTICS_RAW_RETENTION_DAYS)."""
    rollup_retention_days: int = 400
    """Days the daily rollups are kept (PRETHRIFT_ANALYTICS_ROLLUP_RETENTION_DAYS)."""
    search_page_url: str | None = None
    """The shop's search page the Demand page links to; unset: this stack's own page (its URL)."""


@dataclass(frozen=True)
class StackConfig:
    """Everything that differs between stacks, validated."""

    stack: str
    app: AppConfig = field(default_factory=AppConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    load_balancer: LoadBalancerConfig = field(default_factory=LoadBalancerConfig)
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    capacity: CapacityStrategy = field(default_factory=CapacityStrategy)
    api: TaskSize = field(default_factory=TaskSize)
    worker: TaskSize = field(default_factory=TaskSize)
    console: TaskSize = field(default_factory=lambda: TaskSize(512, 1024, 1, 1, 1))
    gpu_worker: GpuWorkerConfig = field(default_factory=GpuWorkerConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    search_log: SearchLogConfig = field(default_factory=SearchLogConfig)

    @property
    def name_prefix(self) -> str:
        return f"prethrift-{self.stack}"


_SECTIONS: dict[str, tuple[str, type[Any]]] = {
    "app": ("app", AppConfig),
    "network": ("network", NetworkConfig),
    "loadBalancer": ("load_balancer", LoadBalancerConfig),
    "database": ("database", DatabaseConfig),
    "cache": ("cache", CacheConfig),
    "capacity": ("capacity", CapacityStrategy),
    "api": ("api", TaskSize),
    "worker": ("worker", TaskSize),
    "console": ("console", TaskSize),
    "gpuWorker": ("gpu_worker", GpuWorkerConfig),
    "observability": ("observability", ObservabilityConfig),
    "storage": ("storage", StorageConfig),
    "searchLog": ("search_log", SearchLogConfig),
}


def _snake(key: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in key)


def _section(key: str, cls: type[Any], raw: Mapping[str, Any] | None) -> Any:
    if raw is None:
        return cls()
    known = set(cls.__dataclass_fields__)
    values: dict[str, Any] = {}
    for name, value in raw.items():
        attr = _snake(name)
        if attr not in known:
            raise ConfigError(
                f"prethrift:{key}.{name} is not a known setting; expected one of {sorted(known)} (in camelCase)"
            )
        values[attr] = tuple(value) if isinstance(value, list) else value
    return cls(**values)


def from_mapping(stack: str, raw: Mapping[str, Any]) -> StackConfig:
    """Build and validate a StackConfig from the `prethrift:` keys of a stack file (no prefix)."""
    sections = {attr: _section(key, cls, raw.get(key)) for key, (attr, cls) in _SECTIONS.items()}
    config = StackConfig(stack=stack, **sections)
    validate(config)
    return config


def load(stack: str | None = None) -> StackConfig:
    """Read this stack's `prethrift:` configuration through the Pulumi runtime."""
    cfg = pulumi.Config("prethrift")
    raw: dict[str, Any] = {key: cfg.get_object(key) for key in _SECTIONS}
    raw = {k: v for k, v in raw.items() if v}
    # CI sets these per deploy: `--config imageTag=$SHA --config imageDigest=sha256:...`.
    for key in ("imageTag", "imageDigest", "gpuImageDigest"):
        value = cfg.get(key)
        if value:
            raw["app"] = {**(raw.get("app") or {}), key: value}
    return from_mapping(stack or pulumi.get_stack(), raw)


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


def _validate_search_log(cfg: SearchLogConfig) -> None:
    if not 1 <= cfg.raw_retention_days <= cfg.rollup_retention_days:
        raise ConfigError(
            "prethrift:searchLog.rawRetentionDays must be at least 1 and at most "
            "prethrift:searchLog.rollupRetentionDays (the daily rollups are made from the raw log)"
        )
    if cfg.search_page_url and not cfg.search_page_url.startswith(("https://", "http://")):
        raise ConfigError("prethrift:searchLog.searchPageUrl must be an https:// URL (the shop's search page)")


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
    _validate_search_log(config.search_log)
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


def sentry_dsn() -> pulumi.Output[str] | None:
    """The Sentry DSN, set with `pulumi config set --secret sentryDsn ...`; None if unset."""
    return pulumi.Config("prethrift").get_secret("sentryDsn")
