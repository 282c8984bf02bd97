"""Settings for every Prethrift program, read once at the entry point and passed down.

Names follow common deployment conventions (``DATABASE_URL``, ``REDIS_URL``, ``IMAGES_BUCKET`` ...);
everything specific to Prethrift is read under ``PRETHRIFT_``.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from webapp.config.base import Environment, web_origin
from webapp.config.embedding import ClipSettings, WorkerSettings
from webapp.config.feeds import AnalyticsSettings, ImportSettings
from webapp.config.operations import ConsoleLoginSettings, MetricsSettings, TelemetrySettings
from webapp.config.stores import DatabaseSettings, RedisSettings, StorageSettings
from webapp.config.traffic import LimitsSettings, SuggestSettings

# The sections, importable from here as the one place settings are read from.
__all__ = [
    "AnalyticsSettings",
    "ClipSettings",
    "ConsoleLoginSettings",
    "DatabaseSettings",
    "Environment",
    "ImportSettings",
    "LimitsSettings",
    "MetricsSettings",
    "Program",
    "RedisSettings",
    "Settings",
    "StorageSettings",
    "SuggestSettings",
    "TelemetrySettings",
    "WorkerSettings",
]


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
    # How long an idle HTTP keep-alive connection stays open. Behind a load balancer it must outlast
    # the balancer's own idle timeout, or the balancer may send a request on a connection the app is
    # closing and answer the client 502 (AWS's ALB documentation says so); infra sets it.
    keep_alive_s: float = Field(default=5.0, gt=0, le=3600)
    admin_token: SecretStr | None = None
    data_dir: Path = Path(".data")
    ssm_prefix: str | None = None
    console_port: int = Field(default=8050, ge=0, le=65535)
    console_password: SecretStr | None = None
    console_login: ConsoleLoginSettings = Field(default_factory=ConsoleLoginSettings)
    # /readyz stays 503 until the served model key covers the whole catalog; None means: outside
    # development (`prethrift run` serves a partial index while it backfills, and warns).
    require_full_index: bool | None = None
    # With that gate on, an upload still waiting for its embedding holds readiness back only once
    # its listing is older than this: a worker a few minutes behind must not keep new API tasks
    # out of the load balancer, while a model whose catalog is not embedded yet still does.
    # 0: every listing must be embedded first.
    ready_max_backlog_age_s: float = Field(default=600.0, ge=0)
    # Web origins (scheme://host[:port]) whose pages may read the public search API and open the
    # suggestion socket: shops embedding the widget. Comma-separated. Unset: in development any
    # port on localhost, 127.0.0.1 or [::1]; elsewhere none (the service's own page needs none).
    cors_origins: Annotated[tuple[str, ...] | None, NoDecode] = None

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    redis: RedisSettings = Field(default_factory=RedisSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    clip: ClipSettings = Field(default_factory=ClipSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    suggest: SuggestSettings = Field(default_factory=SuggestSettings)
    imports: ImportSettings = Field(default_factory=ImportSettings)
    analytics: AnalyticsSettings = Field(default_factory=AnalyticsSettings)

    @field_validator("admin_token")
    @classmethod
    def _token_strength(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (generate one with `openssl rand -base64 24`)")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if value is None:
            return None
        return tuple(web_origin(part) for part in value)

    @property
    def is_development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def gates_on_coverage(self) -> bool:
        if self.require_full_index is None:
            return not self.is_development
        return self.require_full_index


class Program(enum.StrEnum):
    """The programs one image runs; each requires exactly the settings it uses."""

    API = "serve"
    WORKER = "worker"
    MIGRATE = "migrate"
    CONSOLE = "console"
    LOADER = "ingest"  # ingest and demo: write items and photos, the worker embeds them
    EXPORT = "export-weights"  # reads the model settings only
