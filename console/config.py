"""The console's configuration, derived once from the service settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.stacks import REPO_ROOT
from webapp.config import Settings


def stack_of(resource_attributes: str | None) -> str:
    """The deployment's stack from ``OTEL_RESOURCE_ATTRIBUTES`` (``deployment.environment=<stack>``,
    set by infra/service.py); ``local`` when unset, as under ``make run``."""
    for pair in (resource_attributes or "").split(","):
        key, _, value = pair.partition("=")
        if key.strip() == "deployment.environment" and value.strip():
            return value.strip()
    return "local"


@dataclass(frozen=True)
class ConsoleConfig:
    dsn: str
    own_stack: str = "local"
    # HTTP basic auth when set; required outside development.
    password: str | None = None
    refresh_s: float = 10.0
    root: Path = REPO_ROOT
    cost_explorer_endpoint: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ConsoleConfig:
        if settings.database.url is None:
            raise ValueError("the console needs DATABASE_URL (the CLI starts the embedded database)")
        password = settings.console_password.get_secret_value() if settings.console_password else None
        if password is None and not settings.is_development:
            raise ValueError(
                f"ENVIRONMENT={settings.environment.value} needs PRETHRIFT_CONSOLE_PASSWORD: the console "
                "shows traffic and costs and must not be open (set it, or put it in SSM)"
            )
        return cls(
            dsn=settings.database.url.get_secret_value(),
            own_stack=stack_of(settings.telemetry.resource_attributes),
            password=password,
        )
