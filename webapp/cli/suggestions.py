"""Learned suggestions: list what shoppers are suggested, remove (and block) or unblock a query."""

from __future__ import annotations

import asyncio

import click

from webapp.cli.common import on_database, settings_for
from webapp.config import Program


@click.group()
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

    with embedded_defaults(settings_for(Program.MIGRATE), Program.MIGRATE) as settings:
        if blocked:
            removed = asyncio.run(on_database(settings, repo.blocked_queries))
            for query, when in removed:
                click.echo(f"{when:%Y-%m-%d %H:%M}  {query}")
            return
        found = asyncio.run(
            on_database(settings, lambda c: repo.learned_queries(c, normalise_query(prefix), limit))
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
    with embedded_defaults(settings_for(Program.MIGRATE), Program.MIGRATE) as settings:
        was_recorded = asyncio.run(on_database(settings, lambda c: repo.remove_query(c, query)))
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
    with embedded_defaults(settings_for(Program.MIGRATE), Program.MIGRATE) as settings:
        was_blocked = asyncio.run(on_database(settings, lambda c: repo.unblock_query(c, query)))
    if not was_blocked:
        raise click.ClickException(f"{query.strip()!r} was not blocked")
    click.echo(f"{query.strip()!r}: unblocked")
