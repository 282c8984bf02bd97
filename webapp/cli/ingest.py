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
    default=None,
    help="folder holding the photos the CSV names by local path",
)
@click.option(
    "--delete-missing",
    is_flag=True,
    help="remove listings an earlier run of this file loaded that it no longer has",
)
def ingest(catalog: Path, images: Path | None, delete_missing: bool) -> None:
    """Bulk-load CATALOG.csv (columns: title, price, image, and optionally description, brand,
    category, size, colour, condition, currency). Rows stream, a few at a time; each row not
    loaded is reported with its line and why, then a summary. Exits 1 if any row failed.
    Items are embedded by the worker.

    A Shopify product export, or a catalog with an external_id column (photos from local paths,
    http(s) URLs or s3:// objects, several per row in an images column separated by |), is
    imported instead: re-runs change only what changed (README.md, "Importing a catalog")."""
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


def _import(catalog: Path, images: Path | None, delete_missing: bool) -> None:
    """A Shopify export or a catalog with external ids, through webapp.imports."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.imports.pipeline import ImportSummary, import_file

    summary = ImportSummary()
    with embedded_defaults(settings_for(Program.LOADER), Program.LOADER) as settings:
        try:
            with database_errors():
                load_with(
                    settings, lambda services: import_file(services, catalog, images, delete_missing, summary)
                )
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        finally:
            for line in summary.lines():
                click.echo(line)
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
