"""The console's configuration, derived once from the service settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from console.auth import password_weakness
from infra.stacks import REPO_ROOT
from webapp.config import ConsoleLoginSettings, Settings


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
    login: ConsoleLoginSettings = field(default_factory=ConsoleLoginSettings)
    # Proxies whose X-Forwarded-For entry names the client (PRETHRIFT_LIMITS_TRUSTED_PROXIES,
    # as for the API: both sit behind the same load balancer).
    trusted_proxies: int = 0
    # The shop's search page, for the Demand page's "run this search" links.
    search_page_url: str = "http://127.0.0.1:8000/"

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
        weakness = password_weakness(password) if password is not None else None
        if weakness is not None and not settings.is_development:
            # Names the setting and the rule it breaks, never the value.
            raise ValueError(
                f"ENVIRONMENT={settings.environment.value}: PRETHRIFT_CONSOLE_PASSWORD {weakness}; the "
                "console shows traffic and costs, so outside development it needs a password that "
                "withstands guessing (generate one with `openssl rand -base64 24`)"
            )
        return cls(
            dsn=settings.database.url.get_secret_value(),
            own_stack=stack_of(settings.telemetry.resource_attributes),
            password=password,
            login=settings.console_login,
            trusted_proxies=settings.limits.trusted_proxies,
            # Unset: the page `prethrift run` serves on this machine.
            search_page_url=settings.analytics.search_page_url or f"http://127.0.0.1:{settings.port}/",
        )
