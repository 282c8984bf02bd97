"""The long-running programs: the API, the ops console, the embedding worker, development's
all-in-one ``run``, and ``migrate``, which runs before them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

import click

from webapp.cli.common import (
    database_errors,
    load_model,
    load_model_for_development,
    log,
    on_database,
    settings_for,
    until_signalled,
)
from webapp.config import Program, Settings

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from webapp.embedding.embedder import ClipModel


def run_serving(main: Coroutine[Any, Any, None]) -> None:
    """``asyncio.run`` on uvloop's event loop (libuv: less CPU per request than asyncio's own
    loop, which the API's requests per core are short of; bench/README.md, per_core), or on
    asyncio's where uvloop is not installed (it has no Windows build)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main)


async def serve_api(settings: Settings, clip: ClipModel, stop: asyncio.Event) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from webapp.app import create_app
    from webapp.http import wsclose
    from webapp.suggest.session import FLOOD_FRAMES

    limits = settings.limits
    # HTTP/1.1 and uncompressed WebSockets only, control frames counted like data frames.
    wsclose.install(wsclose.ControlFrameLimits(limits.ws_frames_per_s, limits.ws_frame_burst, FLOOD_FRAMES))
    app = create_app(settings, clip=clip)
    config = Config()
    config.bind = [f"{settings.host}:{settings.port}"]
    config.accesslog = None
    config.graceful_timeout = 10
    config.keep_alive_timeout = settings.keep_alive_s
    # Frames past this close the socket; the session answers smaller oversized frames itself.
    config.websocket_max_message_size = 16 * settings.limits.ws_max_frame_bytes
    log.info("serving", url=f"http://{settings.host}:{settings.port}", docs="/docs")
    await serve(app, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]


async def serve_console(settings: Settings, stop: asyncio.Event) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    from console.app import console_server
    from console.config import ConsoleConfig
    from webapp.adapters.db import run_migrations

    try:
        console_config = ConsoleConfig.from_settings(settings)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    await run_migrations(console_config.dsn)
    console = console_server(console_config)
    config = Config()
    config.bind = [f"{settings.host}:{settings.console_port}"]
    config.accesslog = None
    config.graceful_timeout = 5
    log.info("console serving", url=f"http://{settings.host}:{settings.console_port}/")
    try:
        await serve(console.asgi, config, shutdown_trigger=stop.wait)  # type: ignore[arg-type]
    finally:
        await asyncio.to_thread(console.close)


@click.command()
def console() -> None:
    """Serve the ops console (latency, caches, cost, ingest, suggestions) on
    PRETHRIFT_HOST:PRETHRIFT_CONSOLE_PORT (127.0.0.1:8050); it asks for PRETHRIFT_CONSOLE_PASSWORD,
    which is required outside development."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.observability.telemetry import init_sentry

    with embedded_defaults(settings_for(Program.CONSOLE), Program.CONSOLE) as settings:
        init_sentry(settings)
        with database_errors():
            asyncio.run(until_signalled(lambda stop: serve_console(settings, stop)))


@click.command()
def serve() -> None:
    """Serve the API with Hypercorn (and the embedding worker, unless PRETHRIFT_WORKER_INLINE=false)."""
    from webapp.adapters.embedded import embedded_defaults

    with embedded_defaults(settings_for(Program.API), Program.API) as settings:
        clip = load_model(settings)
        with database_errors():
            run_serving(until_signalled(lambda stop: serve_api(settings, clip, stop)))


@click.command()
@click.option("--demo-items", default=60, show_default=True, help="demo catalog size when empty")
def run(demo_items: int) -> None:
    """Development: embedded services, migrations, a demo catalog if empty, then serve the API
    and the ops console."""
    from webapp.adapters.embedded import embedded_defaults

    started = time.perf_counter()
    with embedded_defaults(settings_for(Program.API), Program.API) as configured:
        settings, clip = load_model_for_development(configured)

        async def main(stop: asyncio.Event) -> None:
            loaded = await _demo_if_empty(settings, demo_items)
            await _backfill_for_development(settings, clip.model_key)
            token = settings.admin_token.get_secret_value() if settings.admin_token else "(unset)"
            click.echo(
                f"\nPrethrift is starting: search page http://{settings.host}:{settings.port}/ , "
                f"API docs http://{settings.host}:{settings.port}/docs "
                f"({loaded} demo items queued; start-up took {time.perf_counter() - started:.1f}s)\n"
                f"Admin token (for POST/DELETE /api/items): {token}\n"
                f"Ops console: http://{settings.host}:{settings.console_port}/\n",
                err=True,
            )
            await asyncio.gather(serve_api(settings, clip, stop), serve_console(settings, stop))

        asyncio.run(until_signalled(main))


async def _demo_if_empty(settings: Settings, count: int) -> int:
    from webapp.items.ingest import load_demo
    from webapp.items.repo import count_items
    from webapp.runtime import open_services

    async with open_services(settings) as services:
        async with services.pool.acquire() as connection:
            if await count_items(connection) > 0:
                return 0
        summary = await load_demo(services, count)
        return summary.loaded


async def _backfill_for_development(settings: Settings, key: str) -> None:
    """Development serves while it backfills a changed model, and says so."""
    from webapp.embedding import model_keys

    async def backfill(connection: Any) -> tuple[int, model_keys.Coverage]:
        queued = await model_keys.reembed(connection, key)
        return queued, await model_keys.coverage(connection, key)

    queued, covered = await on_database(settings, backfill)
    if covered.embedded < covered.total:
        click.echo(
            f"WARNING: model {key} covers {covered.describe()}; searches return partial results until "
            f"the worker has embedded the rest ({queued} job(s) queued now). Production APIs stay "
            "not-ready instead (see infra/README.md).",
            err=True,
        )


@click.command()
def worker() -> None:
    """Run the embedding worker until SIGTERM (production runs it as its own service)."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.observability.metrics_store import MetricsRecorder, MetricsWriter
    from webapp.observability.telemetry import init_sentry
    from webapp.observability.tracing import configure as configure_tracing
    from webapp.runtime import open_services, run_worker

    with embedded_defaults(settings_for(Program.WORKER), Program.WORKER) as settings:
        clip = load_model(settings)

        async def work(stop: asyncio.Event) -> None:
            init_sentry(settings)
            configure_tracing(settings.telemetry)
            recorder = MetricsRecorder() if settings.metrics.enabled else None
            if settings.worker.metrics_port is not None:
                from prometheus_client import start_http_server

                start_http_server(settings.worker.metrics_port, addr="127.0.0.1")
            async with open_services(settings, clip) as services:
                writer = MetricsWriter(services.pool, recorder, settings.metrics) if recorder else None
                async with writer or contextlib.nullcontext():
                    await run_worker(services, stop, recorder)

        with database_errors():
            asyncio.run(until_signalled(work))


@click.command()
def migrate() -> None:
    """Apply database migrations."""
    from webapp.adapters.db import run_migrations
    from webapp.adapters.embedded import embedded_defaults

    with embedded_defaults(settings_for(Program.MIGRATE), Program.MIGRATE) as settings:
        assert settings.database.url is not None
        with database_errors():
            applied = asyncio.run(run_migrations(settings.database.url.get_secret_value()))
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")
