"""What the commands share: settings for a program, the model, the database, signals.

Each command imports what it uses inside its function: ``migrate``, ``console`` and ``plan``
start without the model code (torch), and webapp never imports console at load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import click
import structlog

from webapp.config import Program, Settings

if TYPE_CHECKING:
    from webapp.embedding.embedder import ClipModel

log = structlog.get_logger("prethrift")


def settings_for(program: Program, **overrides: Any) -> Settings:
    """Settings for ``program``, or a message naming what is wrong (never a secret's value)."""
    from pydantic import ValidationError

    from webapp.cli.programs import (
        SettingsError,
        check_program_settings,
        describe_settings_error,
        load_settings,
    )
    from webapp.observability.telemetry import configure_logging

    try:
        settings = load_settings(program, **overrides)
    except ValidationError as error:
        raise click.ClickException(describe_settings_error(error)) from None
    try:
        check_program_settings(settings, program)
    except SettingsError as error:
        raise click.ClickException(str(error)) from None
    configure_logging(settings.telemetry.log_level, json_logs=not sys.stderr.isatty())
    return settings


def load_model(settings: Settings) -> ClipModel:
    from webapp.embedding.embedder import ModelLoadError, load_clip

    try:
        return load_clip(settings.clip)
    except ModelLoadError as error:
        raise click.ClickException(str(error)) from None


def load_model_for_development(settings: Settings) -> tuple[Settings, ClipModel]:
    """Like load_model, but `make run` on an offline machine goes on with random weights
    (loudly), unless the user chose the weights explicitly."""
    from webapp.embedding.embedder import ModelLoadError, load_clip

    try:
        return settings, load_clip(settings.clip)
    except ModelLoadError as error:
        if os.environ.get("PRETHRIFT_CLIP_PRETRAINED"):
            raise click.ClickException(str(error)) from None
        click.echo(
            f"{error}\n\nThis development run goes on with random weights: uploads, photo search and the "
            "console work, text similarity is meaningless. Set PRETHRIFT_CLIP_PRETRAINED to choose.\n",
            err=True,
        )
        fallback = settings.model_copy(update={"clip": settings.clip.model_copy(update={"pretrained": "none"})})
        return fallback, load_model(fallback)


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """A database that cannot be reached is a one-line error naming the setting, not a trace.

    The driver's messages name the host and user, never the password in the DSN.
    """
    import asyncpg

    try:
        yield
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        raise click.ClickException(
            f"cannot use the database in DATABASE_URL ({type(error).__name__}: {error}); "
            "check the host, port, user and password, and that the server accepts connections"
        ) from None


async def until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


async def on_database(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Migrate, then run ``work`` on one plain connection (no model, no pool)."""
    import asyncpg

    from webapp.adapters.db import run_migrations

    assert settings.database.url is not None
    dsn = settings.database.url.get_secret_value()
    await run_migrations(dsn)
    connection = await asyncpg.connect(dsn)
    try:
        return await work(connection)
    finally:
        await connection.close()


def load_with(settings: Settings, loader: Callable[[Any], Awaitable[Any]]) -> Any:
    from webapp.runtime import open_services

    async def go() -> Any:
        async with open_services(settings) as services:
            return await loader(services)

    return asyncio.run(go())
