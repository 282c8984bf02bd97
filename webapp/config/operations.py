"""Settings of telemetry, the metrics store and the ops console's sign-in."""

from __future__ import annotations

import os
import socket

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True, env_ignore_empty=True)

    sentry_dsn: SecretStr | None = Field(default=None, validation_alias="SENTRY_DSN")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    otlp_endpoint: str | None = Field(default=None, validation_alias="OTEL_EXPORTER_OTLP_ENDPOINT")
    service_name: str = Field(default="prethrift", validation_alias="OTEL_SERVICE_NAME")
    resource_attributes: str | None = Field(default=None, validation_alias="OTEL_RESOURCE_ATTRIBUTES")

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        from sentry_sdk.utils import BadDsn, Dsn

        try:
            Dsn(value.get_secret_value())
        except BadDsn:
            # BadDsn's own text can quote parts of the DSN; this one never does.
            raise ValueError(
                "is not a Sentry DSN (https://KEY@HOST/PROJECT); copy it from the Sentry project's "
                "Settings > Client Keys (DSN)"
            ) from None
        return value


class MetricsSettings(BaseSettings):
    """How this process writes to the metrics store (``PRETHRIFT_METRICS_*``)."""

    model_config = SettingsConfigDict(env_prefix="PRETHRIFT_METRICS_", extra="ignore", env_ignore_empty=True)

    enabled: bool = True
    flush_interval_s: float = Field(default=10.0, gt=0)
    retention_days: int = Field(default=14, ge=1)
    # Names this process in the rows it writes; replicas never overwrite each other's counts.
    replica: str = Field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")


class ConsoleLoginSettings(BaseSettings):
    """The brake on guessing the console's password, per client address
    (``PRETHRIFT_CONSOLE_LOGIN_*``; console/auth.py applies it)."""

    model_config = SettingsConfigDict(
        env_prefix="PRETHRIFT_CONSOLE_LOGIN_", extra="ignore", env_ignore_empty=True
    )

    # Wrong passwords a client may send before it has to wait; the first wait is delay_s and
    # each further failure doubles it, up to max_delay_s.
    free_failures: int = Field(default=5, ge=1)
    delay_s: float = Field(default=1.0, gt=0)
    max_delay_s: float = Field(default=60.0, gt=0)
    # After this many failures the client is refused for lockout_s (and again at its first
    # failure after that, until lockout_s passes without one).
    lockout_failures: int = Field(default=20, ge=2)
    lockout_s: float = Field(default=900.0, gt=0, le=86_400)

    @model_validator(mode="after")
    def _lockout_after_backoff(self) -> ConsoleLoginSettings:
        if self.lockout_failures <= self.free_failures:
            raise ValueError(
                f"PRETHRIFT_CONSOLE_LOGIN_LOCKOUT_FAILURES ({self.lockout_failures}) must be more than "
                f"PRETHRIFT_CONSOLE_LOGIN_FREE_FAILURES ({self.free_failures})"
            )
        return self
