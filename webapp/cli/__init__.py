"""The ``prethrift`` command line: serve, worker, migrate, console, run (serving.py); ingest and
demo (ingest.py); the model lifecycle, reembed, models, retire and export-weights (models.py);
learned suggestions, list, remove and unblock (suggestions.py); and plan.
"""

from __future__ import annotations

import sys

import click

from webapp.cli import ingest, models, serving, suggestions


@click.group()
def main() -> None:
    """Prethrift: AI search for second-hand clothing."""


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def plan(ctx: click.Context) -> None:
    """Offline infrastructure preview with projected monthly costs (see infra/README.md)."""
    from infra.plan import main as plan_main

    sys.exit(plan_main(list(ctx.args)))


for command in (
    serving.serve,
    serving.worker,
    serving.migrate,
    serving.console,
    serving.run,
    ingest.ingest,
    ingest.demo,
    models.reembed,
    models.models,
    models.retire,
    models.export_weights,
    suggestions.suggestions,
    plan,
):
    main.add_command(command)
