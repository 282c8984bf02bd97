"""The console's app factory: ``create_console(config) -> Dash`` (pages in console/pages/)."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import flask
from a2wsgi import WSGIMiddleware
from dash import Dash, Input, Output
from dash._callback_context import context_value

from console import layout
from console.auth import LoginGuard
from console.config import ConsoleConfig
from console.cost import PlanCache, SpendCache, stacks
from console.db import MetricsDatabase
from console.state import EXTENSION, ConsoleState
from webapp.http.ratelimit import client_address, limit_headers

# Threads serving Dash callbacks (each may wait on PostgreSQL) for one console.
CONSOLE_THREADS = 8


def create_console(config: ConsoleConfig, database: MetricsDatabase | None = None) -> Dash:
    """Build the console over ``config.dsn``; serve ``app.server`` (WSGI) with any server."""
    # Dash sets its callback-context variable once, in whatever context first imported dash, and
    # reads it while it loads the pages. A console built in another asyncio task (each of a
    # process's consoles after the first) would not see it, so give this context its own.
    try:
        context_value.get()
    except LookupError:
        context_value.set({})
    # name="console" makes Dash load console/pages/*.py as console.pages.<page>.
    app = Dash(
        "console",
        use_pages=True,
        pages_folder="pages",
        title="Prethrift console",
        update_title="",
        suppress_callback_exceptions=True,
    )
    server: flask.Flask = app.server
    server.extensions[EXTENSION] = ConsoleState(
        config,
        database or MetricsDatabase(config.dsn),
        PlanCache(config.root),
        SpendCache(endpoint_url=config.cost_explorer_endpoint),
    )
    known = stacks(config.root)
    default = config.own_stack if config.own_stack in known else known[0]
    app.layout = layout.shell(known, default, config.own_stack, config.refresh_s)

    @app.callback(Output("refresh", "disabled"), Input("auto-refresh", "value"))  # type: ignore[untyped-decorator]
    def _toggle_refresh(value: list[str] | None) -> bool:
        return "on" not in (value or [])

    if config.password is not None:
        _require_password(server, config)
    return app


@dataclass(frozen=True)
class ConsoleServer:
    """The console as an ASGI app for Hypercorn, and how to release what it holds.

    a2wsgi bridges Dash's WSGI app: unlike Hypercorn's own WSGI mode it answers HEAD and
    conditional requests (bodiless 200 and 304 responses), which browsers send on reload.
    """

    dash: Dash
    asgi: WSGIMiddleware

    def close(self) -> None:
        self.dash.server.extensions[EXTENSION].database.close()


def console_server(config: ConsoleConfig, database: MetricsDatabase | None = None) -> ConsoleServer:
    """Build the console and its ASGI adapter."""
    app = create_console(config, database)
    return ConsoleServer(app, WSGIMiddleware(app.server, workers=CONSOLE_THREADS))


def _require_password(server: flask.Flask, config: ConsoleConfig) -> None:
    """HTTP basic auth (any user name) with a per-client brake on wrong passwords: past the free
    failures a client waits, doubling each time, then is locked out (429 with Retry-After)."""
    assert config.password is not None
    # Digests compare in constant time whatever the lengths: the length is not given away either.
    expected = hashlib.sha256(config.password.encode()).digest()
    guard = LoginGuard(config.login)

    @server.before_request
    def _check() -> flask.Response | None:
        request = flask.request
        client = client_address(request.headers, request.remote_addr, config.trusted_proxies)
        auth = request.authorization
        if auth is not None:
            given = hashlib.sha256((auth.password or "").encode()).digest()
            correct = hmac.compare_digest(given, expected)
            # A client that must wait is refused whether or not it guessed right.
            wait = guard.attempt(client, correct)
            if wait > 0:
                return _too_many(client, wait)
            if correct:
                return None
        elif (wait := guard.wait(client)) > 0:
            return _too_many(client, wait)
        return flask.Response(
            "The Prethrift console needs the password in PRETHRIFT_CONSOLE_PASSWORD (any user name).\n",
            401,
            {"WWW-Authenticate": 'Basic realm="Prethrift console", charset="UTF-8"'},
        )


def _too_many(client: str, wait: float) -> flask.Response:
    headers = limit_headers(wait)
    message = f"Too many wrong passwords from {client}; try again in {headers['Retry-After']} s.\n"
    return flask.Response(message, 429, headers)
