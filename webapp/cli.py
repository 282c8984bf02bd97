"""The ``prethrift`` command line: serve, worker, migrate, console, ingest, demo, run, plan, the
model lifecycle (reembed, models, retire) and learned suggestions (suggestions list/remove/unblock).

One function per command, and each imports what it uses inside it: ``migrate``, ``console``
and ``plan`` start without the model code (torch), and webapp never imports console at load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import structlog

from webapp.config import Program, Settings

if TYPE_CHECKING:
    from webapp.embedding.embedder import ClipModel

log = structlog.get_logger("prethrift")


def _settings(program: Program, **overrides: Any) -> Settings:
    """Settings for ``program``, or a message naming what is wrong (never a secret's value)."""
    from pydantic import ValidationError

    from webapp.config import SettingsError, check_program_settings, describe_settings_error, load_settings
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


def _load_model(settings: Settings) -> ClipModel:
    from webapp.embedding.embedder import ModelLoadError, load_clip

    try:
        return load_clip(settings.clip)
    except ModelLoadError as error:
        raise click.ClickException(str(error)) from None


def _load_model_for_development(settings: Settings) -> tuple[Settings, ClipModel]:
    """Like _load_model, but `make run` on an offline machine goes on with random weights
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
        return fallback, _load_model(fallback)


@contextlib.contextmanager
def _database_errors() -> Iterator[None]:
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


async def _until_signalled(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await main(stop)


@click.group()
def main() -> None:
    """Prethrift: AI search for second-hand clothing."""


async def _serve(settings: Settings, clip: ClipModel, stop: asyncio.Event) -> None:
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


async def _serve_console(settings: Settings, stop: asyncio.Event) -> None:
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


@main.command()
def console() -> None:
    """Serve the ops console (latency, caches, cost, ingest, suggestions) on
    PRETHRIFT_HOST:PRETHRIFT_CONSOLE_PORT (127.0.0.1:8050); it asks for PRETHRIFT_CONSOLE_PASSWORD,
    which is required outside development."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.observability.telemetry import init_sentry

    with embedded_defaults(_settings(Program.CONSOLE), Program.CONSOLE) as settings:
        init_sentry(settings)
        with _database_errors():
            asyncio.run(_until_signalled(lambda stop: _serve_console(settings, stop)))


@main.command()
def serve() -> None:
    """Serve the API with Hypercorn (and the embedding worker, unless PRETHRIFT_WORKER_INLINE=false)."""
    from webapp.adapters.embedded import embedded_defaults

    with embedded_defaults(_settings(Program.API), Program.API) as settings:
        clip = _load_model(settings)
        with _database_errors():
            asyncio.run(_until_signalled(lambda stop: _serve(settings, clip, stop)))


@main.command()
@click.option("--demo-items", default=60, show_default=True, help="demo catalog size when empty")
def run(demo_items: int) -> None:
    """Development: embedded services, migrations, a demo catalog if empty, then serve the API
    and the ops console."""
    from webapp.adapters.embedded import embedded_defaults

    started = time.perf_counter()
    with embedded_defaults(_settings(Program.API), Program.API) as configured:
        settings, clip = _load_model_for_development(configured)

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
            await asyncio.gather(_serve(settings, clip, stop), _serve_console(settings, stop))

        asyncio.run(_until_signalled(main))


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

    queued, covered = await _on_database(settings, backfill)
    if covered.embedded < covered.total:
        click.echo(
            f"WARNING: model {key} covers {covered.describe()}; searches return partial results until "
            f"the worker has embedded the rest ({queued} job(s) queued now). Production APIs stay "
            "not-ready instead (see infra/README.md).",
            err=True,
        )


@main.command()
def worker() -> None:
    """Run the embedding worker until SIGTERM (production runs it as its own service)."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.observability.metrics_store import MetricsRecorder, MetricsWriter
    from webapp.observability.telemetry import init_sentry
    from webapp.observability.tracing import configure as configure_tracing
    from webapp.runtime import open_services, run_worker

    with embedded_defaults(_settings(Program.WORKER), Program.WORKER) as settings:
        clip = _load_model(settings)

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

        with _database_errors():
            asyncio.run(_until_signalled(work))


@main.command()
def migrate() -> None:
    """Apply database migrations."""
    from webapp.adapters.db import run_migrations
    from webapp.adapters.embedded import embedded_defaults

    with embedded_defaults(_settings(Program.MIGRATE), Program.MIGRATE) as settings:
        assert settings.database.url is not None
        with _database_errors():
            applied = asyncio.run(run_migrations(settings.database.url.get_secret_value()))
        click.echo(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


def _load_with(settings: Settings, loader: Callable[[Any], Awaitable[Any]]) -> Any:
    from webapp.runtime import open_services

    async def go() -> Any:
        async with open_services(settings) as services:
            return await loader(services)

    return asyncio.run(go())


@main.command()
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="folder holding the photos the CSV names by local path",
)
@click.option(
    "--delete-missing",
    is_flag=True,
    help="remove listings an earlier run of this file loaded and it no longer has",
)
def ingest(catalog: Path, images: Path | None, delete_missing: bool) -> None:
    """Bulk-load CATALOG.csv (columns: title, price, image, and optionally description, brand,
    category, size, colour, condition, currency). Rows stream, a few at a time; each row not
    loaded is reported with its line and why, then a summary. Exits 1 if any row failed.
    Items are embedded by the worker.

    A Shopify product export, or a catalog with an external_id column (and photos from local
    paths, http(s) URLs or s3:// objects, several per row in an images column separated by |),
    is imported instead: re-runs change only what changed (README.md, "Importing a catalog")."""
    from webapp.imports.catalog import is_import_catalog

    if is_import_catalog(catalog):
        _import(catalog, images, delete_missing)
        return
    if images is None:
        raise click.UsageError("--images is required: the folder holding the photos the CSV names")
    from webapp.adapters.embedded import embedded_defaults
    from webapp.items.ingest import CatalogFile, IngestSummary, load_rows

    try:
        opened = CatalogFile(catalog, images)
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    summary = IngestSummary()
    with opened, embedded_defaults(_settings(Program.LOADER), Program.LOADER) as settings:
        try:
            with _database_errors():
                _load_with(settings, lambda services: load_rows(services, opened.rows(), summary))
        finally:
            # Also when an outage stops the load: what was loaded and what failed so far.
            for line in summary.lines():
                click.echo(line)
        warning = asyncio.run(_idle_keys_warning(settings)) if summary.loaded else None
    if warning:
        click.echo(warning, err=True)
    if summary.failed:
        sys.exit(1)


def _import(catalog: Path, images: Path | None, delete_missing: bool) -> None:
    from webapp.adapters.embedded import embedded_defaults
    from webapp.imports.pipeline import ImportSummary, import_file

    summary = ImportSummary()
    with embedded_defaults(_settings(Program.LOADER), Program.LOADER) as settings:
        try:
            with _database_errors():
                _load_with(
                    settings, lambda services: import_file(services, catalog, images, delete_missing, summary)
                )
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        finally:
            for line in summary.lines():
                click.echo(line)
    if summary.failed:
        sys.exit(1)


@main.command()
@click.option("--items", "count", default=60, show_default=True, type=click.IntRange(1, 100_000))
def demo(count: int) -> None:
    """Load a synthetic catalog of drawn garments (embedded by the worker)."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.items.ingest import load_demo

    with embedded_defaults(_settings(Program.LOADER), Program.LOADER) as settings:
        summary = _load_with(settings, lambda services: load_demo(services, count))
        warning = asyncio.run(_idle_keys_warning(settings)) if summary.loaded else None
    for line in summary.lines():
        click.echo(line)
    if warning:
        click.echo(warning, err=True)


async def _on_database(settings: Settings, work: Callable[[Any], Awaitable[Any]]) -> Any:
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


@main.command()
def reembed() -> None:
    """Register the model key configured here (PRETHRIFT_CLIP_MODEL, PRETHRIFT_CLIP_PRETRAINED)
    and queue a job for every item it has not embedded; a `prethrift worker` with the same
    settings works them. Idempotent."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.embedding import model_keys

    with embedded_defaults(_settings(Program.MIGRATE), Program.MIGRATE) as settings:
        key = model_keys.model_key_for(settings.clip)
        queued = asyncio.run(_on_database(settings, lambda c: model_keys.reembed(c, key)))
    click.echo(f"model key {key}: queued {queued} job(s)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list instead of a table")
def models(as_json: bool) -> None:
    """Each registered model key: items embedded, catalog total, coverage and state
    (serving, backfilling, retired)."""
    import json

    from webapp.adapters.embedded import embedded_defaults
    from webapp.embedding import model_keys

    with embedded_defaults(_settings(Program.MIGRATE), Program.MIGRATE) as settings:
        found = asyncio.run(_on_database(settings, model_keys.list_models))
    if as_json:
        click.echo(json.dumps([m.as_json() for m in found]))
        return
    if not found:
        click.echo("no model keys registered (an upload or `prethrift reembed` registers one)")
        return
    width = max(len(m.model_key) for m in found)
    click.echo(f"{'model key':<{width}}  {'embedded':>9}  {'total':>9}  coverage  state        apis  workers")
    for m in found:
        click.echo(
            f"{m.model_key:<{width}}  {m.embedded:>9,}  {m.total:>9,}  {m.coverage:>8.1%}  "
            f"{m.state:<11}  {m.serving_replicas:>4}  {m.workers:>7}"
        )


@main.command()
@click.argument("key")
@click.option("--force", is_flag=True, help="retire it even while an API reports serving it")
def retire(key: str, force: bool) -> None:
    """Delete KEY's embeddings, its HNSW index and its jobs, and stop queueing uploads for it.
    Refuses while an API serves KEY."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.embedding import model_keys

    with embedded_defaults(_settings(Program.MIGRATE), Program.MIGRATE) as settings:
        try:
            done = asyncio.run(_on_database(settings, lambda c: model_keys.retire(c, key, force=force)))
        except (LookupError, model_keys.KeyInUse) as error:
            raise click.ClickException(str(error.args[0])) from None
    click.echo(
        f"retired {done.model_key}: deleted {done.embeddings} embedding(s), {done.jobs} job(s), "
        f"index {done.index}"
    )


@main.group()
def suggestions() -> None:
    """What shoppers are suggested while they type: list the learned queries, remove one."""


@suggestions.command("list")
@click.option("--prefix", default="", help="only queries that start with this")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--blocked", is_flag=True, help="list the removed (blocked) queries instead")
def suggestions_list(prefix: str, limit: int, blocked: bool) -> None:
    """Recorded queries, most clients first; those run by PRETHRIFT_SUGGEST_MIN_CLIENTS clients
    within the retention are suggested."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.search.parse import normalise_query
    from webapp.suggest import repo

    with embedded_defaults(_settings(Program.MIGRATE), Program.MIGRATE) as settings:
        if blocked:
            removed = asyncio.run(_on_database(settings, repo.blocked_queries))
            for query, when in removed:
                click.echo(f"{when:%Y-%m-%d %H:%M}  {query}")
            return
        found = asyncio.run(
            _on_database(settings, lambda c: repo.learned_queries(c, normalise_query(prefix), limit))
        )
    if not found:
        click.echo("no queries recorded" + (f" starting with {prefix!r}" if prefix else ""))
        return
    click.echo("clients  searches  last seen         query")
    for q in found:
        click.echo(f"{q.clients:>7}  {q.count:>8}  {q.last_seen:%Y-%m-%d %H:%M}  {q.query}")


@suggestions.command("remove")
@click.argument("query")
def suggestions_remove(query: str) -> None:
    """Stop suggesting QUERY and never learn it again (`unblock` undoes the block)."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.suggest import repo

    if repo.recordable_query(query) is None:
        raise click.ClickException(
            f"no search is recorded as {query!r}: name a query of 1 to {repo.MAX_QUERY_CHARS} characters"
        )
    with embedded_defaults(_settings(Program.MIGRATE), Program.MIGRATE) as settings:
        was_recorded = asyncio.run(_on_database(settings, lambda c: repo.remove_query(c, query)))
    state = "removed and blocked" if was_recorded else "was not recorded; blocked"
    click.echo(f"{query.strip()!r}: {state} (answers held by a running API expire within seconds)")


@suggestions.command("unblock")
@click.argument("query")
def suggestions_unblock(query: str) -> None:
    """Let QUERY be learned again from new searches."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.suggest import repo

    if repo.recordable_query(query) is None:
        raise click.ClickException(f"{query!r} was not blocked")
    with embedded_defaults(_settings(Program.MIGRATE), Program.MIGRATE) as settings:
        was_blocked = asyncio.run(_on_database(settings, lambda c: repo.unblock_query(c, query)))
    if not was_blocked:
        raise click.ClickException(f"{query.strip()!r} was not blocked")
    click.echo(f"{query.strip()!r}: unblocked")


async def _idle_keys_warning(settings: Settings) -> str | None:
    """Keys that new items were queued for but no worker is running."""
    from webapp.embedding import model_keys

    async def check(connection: Any) -> list[str]:
        active = [m for m in await model_keys.list_models(connection) if m.state != "retired"]
        return [m.model_key for m in active if m.workers == 0]

    idle = await _on_database(settings, check)
    if not idle:
        return None
    return (
        f"no embedding worker is running for {', '.join(idle)}: the items stay pending until one "
        "runs (`prethrift worker` with that model, or `make run`)"
    )


@main.command("export-weights")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def export_weights(output: Path) -> None:
    """Save the configured model's weights to a file, for machines without network access
    (then set PRETHRIFT_CLIP_PRETRAINED to that path)."""
    import torch

    settings = _settings(Program.EXPORT)
    clip = _load_model(settings)
    torch.save(clip.model.state_dict(), output)
    click.echo(f"saved {settings.clip.model} weights to {output}")


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def plan(ctx: click.Context) -> None:
    """Offline infrastructure preview with projected monthly costs (see infra/README.md)."""
    from infra.plan import main as plan_main

    sys.exit(plan_main(list(ctx.args)))


if __name__ == "__main__":
    main()
