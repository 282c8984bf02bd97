"""The stack's settings, read once from `Pulumi.<stack>.yaml` into typed, validated objects.

Every difference between dev and prod lives in the stack file; modules receive these objects
and never look at the stack name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

# Re-exported: the program and the tests catch ConfigError from here.
from infra.config_checks import ConfigError as ConfigError
from infra.config_checks import validate

NatStrategy = Literal["single", "per-az"]


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
    read_replicas: int = 0
    """Streaming read replicas (same class, single-AZ) that searches, suggestions, facets and
    listings read from through DATABASE_READ_URL: the way to add database capacity for reads
    (infra/README.md, capacity notes)."""


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
    requests_per_target: int = 1020
    """ALB requests per task per minute that the API's autoscaling aims for.

    About 70% of the load one API core carries within the open-loop p99 target of uncached
    searches with its database elsewhere, with the text tower in float32 (a Fargate CPU may lack
    bfloat16 instructions): bench/README.md, section ``per_core``; infra/README.md, capacity
    notes. Re-measure with ``python -m bench.per_core --text-precision fp32`` and set
    0.7 x 60 x the measured searches a second. The API is one event loop, so a second vCPU
    serves the model's batches and the worker, not twice the searches.
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


def sentry_dsn() -> pulumi.Output[str] | None:
    """The Sentry DSN, set with `pulumi config set --secret sentryDsn ...`; None if unset."""
    return pulumi.Config("prethrift").get_secret("sentryDsn")


def shopify_webhook_secret() -> pulumi.Output[str] | None:
    """The shop's webhook signing secret, set with `pulumi config set --secret
    shopifyWebhookSecret ...`; None if unset (the API then answers its webhook route 404)."""
    return pulumi.Config("prethrift").get_secret("shopifyWebhookSecret")
