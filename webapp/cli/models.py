"""The model lifecycle: ``reembed`` for a new model key, ``models`` to see coverage, ``retire``
an old key, and ``export-weights`` for machines without network access."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from webapp.cli.common import load_model, on_database, settings_for
from webapp.config import Program


@click.command()
def reembed() -> None:
    """Register the model key configured here (PRETHRIFT_CLIP_MODEL, PRETHRIFT_CLIP_PRETRAINED)
    and queue a job for every item it has not embedded; a `prethrift worker` with the same
    settings works them. Idempotent."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.embedding import model_keys

    with embedded_defaults(settings_for(Program.MIGRATE), Program.MIGRATE) as settings:
        key = model_keys.model_key_for(settings.clip)
        queued = asyncio.run(on_database(settings, lambda c: model_keys.reembed(c, key)))
    click.echo(f"model key {key}: queued {queued} job(s)")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="print a JSON list instead of a table")
def models(as_json: bool) -> None:
    """Each registered model key: items embedded, catalog total, coverage and state
    (serving, backfilling, retired)."""
    import json

    from webapp.adapters.embedded import embedded_defaults
    from webapp.embedding import model_keys

    with embedded_defaults(settings_for(Program.MIGRATE), Program.MIGRATE) as settings:
        found = asyncio.run(on_database(settings, model_keys.list_models))
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


@click.command()
@click.argument("key")
@click.option("--force", is_flag=True, help="retire it even while an API reports serving it")
def retire(key: str, force: bool) -> None:
    """Delete KEY's embeddings, its HNSW index and its jobs, and stop queueing uploads for it.
    Refuses while an API serves KEY."""
    from webapp.adapters.embedded import embedded_defaults
    from webapp.embedding import model_keys

    with embedded_defaults(settings_for(Program.MIGRATE), Program.MIGRATE) as settings:
        try:
            done = asyncio.run(on_database(settings, lambda c: model_keys.retire(c, key, force=force)))
        except (LookupError, model_keys.KeyInUse) as error:
            raise click.ClickException(str(error.args[0])) from None
    click.echo(
        f"retired {done.model_key}: deleted {done.embeddings} embedding(s), {done.jobs} job(s), "
        f"index {done.index}"
    )


@click.command("export-weights")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
def export_weights(output: Path) -> None:
    """Save the configured model's weights to a file, for machines without network access
    (then set PRETHRIFT_CLIP_PRETRAINED to that path)."""
    import torch

    settings = settings_for(Program.EXPORT)
    # The weights as published (float32), whatever number format this machine would run them in.
    settings = settings.model_copy(update={"clip": settings.clip.model_copy(update={"text_precision": "fp32"})})
    clip = load_model(settings)
    torch.save(clip.model.state_dict(), output)
    click.echo(f"saved {settings.clip.model} weights to {output}")
