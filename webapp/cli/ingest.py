"""Loading a catalog: ``ingest`` (a CSV of listings and a folder of photos) and ``demo``
(drawn garments). The worker embeds what they load."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import click

from webapp.cli.common import database_errors, load_with, on_database, settings_for
from webapp.config import Program, Settings


@click.command()
@click.argument("catalog", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--images",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="folder holding the photos named in the CSV's image column",
)
def ingest(catalog: Path, images: Path) -> None:
    """Bulk-load CATALOG.csv (columns: title, price, image, and optionally description, brand,
    category, size, colour, condition, currency). Rows stream, a few at a time; each row not
    loaded is reported with its line and why, then a summary. Exits 1 if any row failed.
    Items are embedded by the worker."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.items.ingest import CatalogFile, IngestSummary, load_rows

    try:
        opened = CatalogFile(catalog, images)
    except (ValueError, OSError) as error:
        raise click.ClickException(str(error)) from None
    summary = IngestSummary()
    with opened, embedded_defaults(settings_for(Program.LOADER), Program.LOADER) as settings:
        try:
            with database_errors():
                load_with(settings, lambda services: load_rows(services, opened.rows(), summary))
        finally:
            # Also when an outage stops the load: what was loaded and what failed so far.
            for line in summary.lines():
                click.echo(line)
        warning = asyncio.run(_idle_keys_warning(settings)) if summary.loaded else None
    if warning:
        click.echo(warning, err=True)
    if summary.failed:
        sys.exit(1)


@click.command()
@click.option("--items", "count", default=60, show_default=True, type=click.IntRange(1, 100_000))
def demo(count: int) -> None:
    """Load a synthetic catalog of drawn garments (embedded by the worker)."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.items.ingest import load_demo

    with embedded_defaults(settings_for(Program.LOADER), Program.LOADER) as settings:
        summary = load_with(settings, lambda services: load_demo(services, count))
        warning = asyncio.run(_idle_keys_warning(settings)) if summary.loaded else None
    for line in summary.lines():
        click.echo(line)
    if warning:
        click.echo(warning, err=True)


async def _idle_keys_warning(settings: Settings) -> str | None:
    """Keys that new items were queued for but no worker is running."""
    from webapp.embedding import model_keys

    async def check(connection: Any) -> list[str]:
        active = [m for m in await model_keys.list_models(connection) if m.state != "retired"]
        return [m.model_key for m in active if m.workers == 0]

    idle = await on_database(settings, check)
    if not idle:
        return None
    return (
        f"no embedding worker is running for {', '.join(idle)}: the items stay pending until one "
        "runs (`prethrift worker` with that model, or `make run`)"
    )
