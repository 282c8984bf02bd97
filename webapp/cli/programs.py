"""What each program needs from its settings before it starts: the settings it refuses to run
without outside development, the secrets it reads (from SSM when configured), every environment
variable the programs read, and error messages that name a setting without showing its value.

The settings schema itself is the webapp.config package; this is the entry points' use of it.
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import AliasChoices, ValidationError
from pydantic_settings import BaseSettings

from webapp.adapters.secrets import fill_environment_from_ssm
from webapp.config import Program, Settings

# Outside development, what each program refuses to start without. Development fills the
# gaps with embedded stand-ins (webapp/adapters/embedded.py); a deployment must name the real thing.
REQUIRED_SETTINGS: dict[Program, tuple[str, ...]] = {
    Program.API: ("DATABASE_URL", "REDIS_URL", "IMAGES_BUCKET", "PRETHRIFT_ADMIN_TOKEN"),
    Program.WORKER: ("DATABASE_URL", "IMAGES_BUCKET"),
    Program.MIGRATE: ("DATABASE_URL",),
    Program.CONSOLE: ("DATABASE_URL", "PRETHRIFT_CONSOLE_PASSWORD"),
    Program.LOADER: ("DATABASE_URL", "IMAGES_BUCKET"),
    Program.EXPORT: (),
}


class SettingsError(ValueError):
    """Settings a program cannot start with. The message names the settings, never their values."""


def _is_set(settings: Settings, name: str) -> bool:
    values: dict[str, object] = {
        "DATABASE_URL": settings.database.url,
        "REDIS_URL": settings.redis.url,
        "IMAGES_BUCKET": settings.storage.bucket,
        "PRETHRIFT_ADMIN_TOKEN": settings.admin_token,
        "PRETHRIFT_CONSOLE_PASSWORD": settings.console_password,
    }
    return values[name] is not None


def missing_settings(settings: Settings, program: Program) -> list[str]:
    """The settings ``program`` requires that are unset (none in development)."""
    if settings.is_development:
        return []
    return [name for name in REQUIRED_SETTINGS[program] if not _is_set(settings, name)]


def check_program_settings(settings: Settings, program: Program) -> None:
    """Refuse to run ``program`` outside development without the settings it uses."""
    missing = missing_settings(settings, program)
    if missing:
        raise SettingsError(
            f"ENVIRONMENT={settings.environment.value}: `prethrift {program.value}` needs "
            f"{', '.join(missing)}; the embedded defaults are for development only. Set "
            f"{'it' if len(missing) == 1 else 'them'} in the environment, or put "
            f"{'it' if len(missing) == 1 else 'them'} in SSM under PRETHRIFT_SSM_PREFIX."
        )


def _settings_classes() -> dict[str, type[BaseSettings]]:
    found: dict[str, type[BaseSettings]] = {Settings.__name__: Settings}
    for field in Settings.model_fields.values():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseSettings):
            found[field.annotation.__name__] = field.annotation
    return found


def _env_name(model: type[BaseSettings] | None, field_name: str) -> str:
    if model is None or field_name not in model.model_fields:
        return field_name
    alias = model.model_fields[field_name].validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    if isinstance(alias, str):
        return alias
    return f"{model.model_config.get('env_prefix', '')}{field_name}".upper()


def describe_settings_error(error: ValidationError) -> str:
    """Pydantic's message repeats the rejected input (a token, a DSN with its password);
    this one names each setting and the problem, and never shows a value."""
    model = _settings_classes().get(error.title)
    lines = []
    for problem in error.errors(include_url=False, include_input=False, include_context=False):
        location = [str(part) for part in problem["loc"]]
        if len(location) >= 2 and location[0] in Settings.model_fields:  # nested, from Settings(...)
            annotation = Settings.model_fields[location[0]].annotation
            nested = (
                annotation if isinstance(annotation, type) and issubclass(annotation, BaseSettings) else None
            )
            name = _env_name(nested, location[1])
        elif location:
            name = _env_name(model, location[0])
        else:
            name = error.title
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"  {name}: {message}")
    return "invalid configuration:\n" + "\n".join(lines)


# Secrets that may live in SSM Parameter Store under PRETHRIFT_SSM_PREFIX.
SSM_SECRET_NAMES = (
    "DATABASE_URL",
    "DATABASE_READ_URL",
    "REDIS_URL",
    "PRETHRIFT_ADMIN_TOKEN",
    "SENTRY_DSN",
    "PRETHRIFT_CONSOLE_PASSWORD",
    "PRETHRIFT_SHOPIFY_WEBHOOK_SECRET",
)
# The secrets each program reads, and so the ones its container is given (infra/containers.py
# declares the same per ECS container; a test holds the two together).
PROGRAM_SECRETS: dict[Program, tuple[str, ...]] = {
    Program.API: (
        "DATABASE_URL",
        "DATABASE_READ_URL",
        "REDIS_URL",
        "PRETHRIFT_ADMIN_TOKEN",
        "SENTRY_DSN",
        "PRETHRIFT_SHOPIFY_WEBHOOK_SECRET",
    ),
    Program.WORKER: ("DATABASE_URL", "SENTRY_DSN"),
    Program.MIGRATE: ("DATABASE_URL",),
    Program.CONSOLE: ("DATABASE_URL", "PRETHRIFT_CONSOLE_PASSWORD", "SENTRY_DSN"),
    Program.LOADER: ("DATABASE_URL",),
    Program.EXPORT: (),
}


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
    # webapp/observability/tracing.py as the OpenTelemetry specification names it.
    return _env_names(Settings) | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "OTEL_TRACES_SAMPLER_ARG"}


def load_settings(program: Program | None = None, **overrides: Any) -> Settings:
    """Build settings from the environment, after filling secrets from SSM when configured:
    the secrets ``program`` reads, or all of them when no program is named."""
    prefix = os.environ.get("PRETHRIFT_SSM_PREFIX")
    if prefix:
        fill_environment_from_ssm(prefix, SSM_SECRET_NAMES if program is None else PROGRAM_SECRETS[program])
    return Settings(**overrides)
