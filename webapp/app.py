"""The app factory: routes, error handling, and the clients opened while serving."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit

import asyncpg
import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from quart import Quart, Response, g, jsonify, request, send_file
from quart_schema import Info, QuartSchema, hide
from werkzeug.datastructures import Headers

from webapp.adapters.cache import RedisBackend
from webapp.adapters.db import DATABASE_USED
from webapp.adapters.storage import ImageNotFound, LocalStorage
from webapp.analytics.routes import blueprint as analytics_blueprint
from webapp.config import Settings
from webapp.embedding import model_keys
from webapp.embedding.embedder import ClipModel
from webapp.embedding.processes import return_freed_pixels_to_the_os
from webapp.http.auth import ADMIN_TOKEN
from webapp.http.cors import OriginPolicy
from webapp.http.cors import install as install_cors
from webapp.http.errors import DATABASE_RETRY_AFTER_S, ApiError, database_unavailable, register_error_handlers
from webapp.http.jsonio import OrjsonProvider
from webapp.http.ratelimit import EXTENSION as RATE_LIMITS
from webapp.http.ratelimit import RateLimits
from webapp.http.schemas import ApiDocument
from webapp.imports.webhooks import blueprint as webhooks_blueprint
from webapp.items.routes import blueprint as items_blueprint
from webapp.observability.metrics_store import MetricsRecorder, MetricsWriter
from webapp.observability.telemetry import REQUEST_LATENCY, init_sentry
from webapp.observability.tracing import TracingMiddleware, name_request_span
from webapp.observability.tracing import configure as configure_tracing
from webapp.runtime import open_services, prepare_model, run_worker
from webapp.search.repo import loaded_queries
from webapp.search.routes import blueprint as search_blueprint
from webapp.services import Readiness, Services
from webapp.suggest.routes import blueprint as suggest_blueprint

log = structlog.get_logger(__name__)

# Probes and scrapes are not traffic: they stay out of the metrics store (Prometheus has them).
_UNRECORDED_ROUTES = frozenset({"/healthz", "/readyz", "/startedz", "/metrics"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
# Image keys are ours (items/ab/<sha256>.<ext>): anything else, NUL bytes included, is no image.
_IMAGE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,254}$")


def create_app(settings: Settings, *, clip: ClipModel | None = None) -> Quart:
    """Build the service. ``clip`` lets a caller share an already loaded model."""
    if settings.database.url is None:
        raise ValueError("create_app needs DATABASE_URL; the CLI starts the embedded database")
    app = Quart(__name__)
    app.json = OrjsonProvider(app)
    storage = settings.storage
    app.config["MAX_CONTENT_LENGTH"] = max(storage.max_upload_bytes, storage.max_image_bytes) + 64 * 1024
    init_sentry(settings)
    configure_tracing(settings.telemetry)
    app.asgi_app = TracingMiddleware(app.asgi_app)  # type: ignore[method-assign,assignment]
    metrics_settings = settings.metrics
    recorder = MetricsRecorder() if metrics_settings.enabled else None
    QuartSchema(
        app,
        info=Info(title="Prethrift search API", version="0.1.0"),
        security_schemes={"bearer": {"type": "http", "scheme": "bearer"}},
        openapi_provider_class=ApiDocument,
    )
    # Made before the services so that error handlers can report a database outage to it.
    readiness = Readiness()
    register_error_handlers(app, readiness.database)
    rate_limits = app.extensions[RATE_LIMITS] = RateLimits(settings.limits)
    return_freed_pixels_to_the_os()
    app.after_request(security_headers(settings))
    install_cors(app, OriginPolicy(settings.cors_origins, development=settings.is_development))
    app.register_blueprint(items_blueprint)
    app.register_blueprint(search_blueprint)
    app.register_blueprint(suggest_blueprint)
    app.register_blueprint(webhooks_blueprint)
    app.register_blueprint(analytics_blueprint)

    @app.while_serving  # type: ignore[type-var]
    async def lifespan() -> AsyncIterator[None]:
        async with open_services(settings, clip, readiness) as services:
            app.extensions["prethrift"] = services
            app.extensions[ADMIN_TOKEN] = services.settings.admin_token
            services.cache.recorder = recorder
            # Per-client limits count in Redis when there is one, so every task shares them.
            backend = services.cache.backend
            rate_limits.share(backend if isinstance(backend, RedisBackend) else None)
            writer = MetricsWriter(services.pool, recorder, metrics_settings) if recorder else None
            app.extensions["metrics_writer"] = writer
            stop = asyncio.Event()
            query_log = asyncio.create_task(services.query_log.run(stop))
            search_log = asyncio.create_task(services.search_log.run(stop))
            # Which key this API serves: `prethrift retire` refuses to retire it meanwhile.
            replica = metrics_settings.replica
            beating = asyncio.create_task(
                model_keys.heartbeat(services.pool, replica, "api", services.model_key, stop)
            )
            app.extensions["coverage_gate"] = model_keys.CoverageGate(
                services.model_key, settings.ready_max_backlog_age_s
            )
            # The model loads in the background so /healthz answers at once; /readyz waits.
            background = asyncio.create_task(_after_start(services, stop, recorder))
            async with writer or contextlib.nullcontext():
                try:
                    yield
                finally:
                    rate_limits.share(None)  # the cache's client closes with the services
                    stop.set()
                    background.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await background
                    await query_log
                    await search_log
                    await beating

    @app.before_request
    async def _start_timer() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=g.request_id)
        if request.url_rule is not None:
            name_request_span(request.method, request.url_rule.rule)

    @app.after_request
    async def _observe(response: Response) -> Response:
        started: float | None = g.get("started")
        if started is not None and request.url_rule is not None:
            elapsed = time.perf_counter() - started
            rule = request.url_rule.rule
            REQUEST_LATENCY.labels(route=rule, method=request.method, status=str(response.status_code)).observe(
                elapsed
            )
            if recorder is not None and rule not in _UNRECORDED_ROUTES:
                recorder.request(f"{request.method} {rule}", response.status_code, elapsed)
        used_at = DATABASE_USED.get()
        if readiness.database.down and used_at is not None and 200 <= response.status_code < 300:
            readiness.database.answered(used_at)  # a request used the database again: the outage is over
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.get("/")
    @hide
    async def search_page() -> Response:
        """A small page for trying search in a browser."""
        return await app.send_static_file("index.html")

    @app.get("/widget.js")
    @hide
    async def widget() -> Response:
        """The <prethrift-search> element that shops embed with one script tag."""
        response = await app.send_static_file("widget.js")
        response.mimetype = "text/javascript"
        # Shops link the same URL for good: a short freshness lets a new release reach them
        # within minutes, and the ETag makes each revalidation a 304.
        response.cache_control.public = True
        response.cache_control.max_age = 300
        # Loaded by other sites' pages, including those that only take resources marked for them.
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response

    @app.get("/healthz")
    @hide
    async def healthz() -> Response:
        return jsonify({"status": "alive"})

    @app.get("/readyz")
    @hide
    async def readyz() -> Response:
        services: Services | None = app.extensions.get("prethrift")
        problems = []
        if services is not None and services.readiness.model_retired:
            problems.append(
                f"model {services.model_key} was retired (deploy the serving model, or bring this one "
                "back with `prethrift reembed`)"
            )
        elif services is None or not services.readiness.model_ready:
            failed = services is not None and services.readiness.model_failed
            problems.append("model failed to load" if failed else "model loading")
        if services is not None:
            probed_at = time.monotonic()
            try:
                async with asyncio.timeout(2):
                    async with services.pool.acquire() as connection:
                        await connection.fetchval("SELECT 1")
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,  # a connection dropped mid-operation (errors.py)
            ) as error:
                readiness.database.failed(error)
                problems.append("database unreachable")
            else:
                readiness.database.answered(probed_at)
            gate: model_keys.CoverageGate | None = app.extensions.get("coverage_gate")
            if gate is not None and services.settings.gates_on_coverage and not problems:
                async with services.pool.acquire() as connection:
                    partial = await gate.problem(connection)
                if partial:
                    problems.append(partial)
        if problems:
            raise ApiError(503, "not_ready", "Not ready: " + ", ".join(problems) + ".")
        return jsonify({"status": "ready", "model": services.model_key if services else None})

    @app.get("/startedz")
    @hide
    async def startedz() -> Response:
        """The load balancer's check: /readyz until the task has been ready once, then 200 for good.

        It never asks the database again after that, so a database failover (a minute or two)
        does not fail every task's check at once, which would have ECS replace them all and reload
        the model in each; requests meanwhile get 503 database_unavailable with Retry-After."""
        services: Services | None = app.extensions.get("prethrift")
        gate: model_keys.CoverageGate | None = app.extensions.get("coverage_gate")
        if services is not None and services.readiness.model_ready:
            gated = services.settings.gates_on_coverage
            if not gated or (gate is not None and gate.complete):
                return jsonify({"status": "started", "model": services.model_key})
        return await readyz()

    @app.get("/metrics")
    @hide
    async def metrics() -> Response:
        # For the collector beside the service only. The load balancer's rule matches one
        # spelling of the path, and "//metrics" or "/%6detrics" reach this same route: so the
        # check is here, on the socket's peer, whatever the path looked like.
        if not from_loopback(request.scope.get("client"), request.headers):
            raise ApiError(404, "not_found", "The requested URL was not found on the server.")
        return Response(generate_latest(), content_type=CONTENT_TYPE_LATEST)

    @app.get("/images/<path:key>")
    @hide
    async def image(key: str) -> Response:
        services: Services = app.extensions["prethrift"]
        storage = services.storage
        if not isinstance(storage, LocalStorage):
            raise ApiError(404, "not_found", "Images are served from the bucket.")
        if not _IMAGE_KEY.match(key):
            raise ApiError(404, "not_found", "No such image.")
        try:
            path = storage.path_for(key)
        except ImageNotFound:
            raise ApiError(404, "not_found", "No such image.") from None
        if not path.is_file():
            raise ApiError(404, "not_found", "No such image.")
        response = await send_file(path)
        response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
        return response

    return app


def from_loopback(peer: tuple[str, int] | None, headers: Headers) -> bool:
    """Whether a request comes from this host itself: its socket peer is a loopback address and
    no proxy relayed it for someone else (a proxy on this host adds X-Forwarded-For)."""
    if peer is None or "X-Forwarded-For" in headers or "Forwarded" in headers:
        return False
    try:
        address = ipaddress.ip_address(peer[0])
    except ValueError:
        return False
    # A dual-stack socket shows an IPv4 peer as ::ffff:127.0.0.1.
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return (mapped or address).is_loopback


def security_headers(settings: Settings) -> Callable[[Response], Awaitable[Response]]:
    """Headers every response carries, and the search page's content security policy."""
    image_sources = ["'self'", "data:", "https:"]
    if settings.storage.endpoint_url:
        parts = urlsplit(settings.storage.endpoint_url)
        image_sources.append(f"{parts.scheme}://{parts.netloc}")
    # The page loads its script and style from /static (no inline code) and opens a WebSocket.
    page_policy = "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src " + " ".join(image_sources),
            "connect-src 'self' ws: wss:",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )

    async def add(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        if request.path == "/" or request.path.startswith("/static/"):
            headers.setdefault("Content-Security-Policy", page_policy)
        else:
            # /docs loads its viewer from a CDN with inline script; it still may not be framed.
            headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        return response

    return add


async def _after_start(services: Services, stop: asyncio.Event, recorder: MetricsRecorder | None) -> None:
    """Load the model (search answers 503 until then), then run the inline worker if configured.

    A database outage while the vector index is checked is waited out; any other failure
    leaves the service alive but not ready, and says why in the log.
    """
    while True:
        try:
            # Checked first, so that a retired key gets no vector index back and serves no search.
            async with services.pool.acquire() as connection:
                retired = await model_keys.is_retired(connection, services.model_key)
            if retired:
                _stay_retired(services)
                return
            await prepare_model(services)
            break
        except Exception as error:
            if not database_unavailable(error):
                services.readiness.model_failed = True
                log.exception("model failed to load; the service stays not-ready")
                return
            services.readiness.database.failed(error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), DATABASE_RETRY_AFTER_S)
            return  # stopping while waiting for the database
    queries = loaded_queries(services)
    if queries is None:
        return
    async with services.pool.acquire() as connection:
        # Uploads are queued for every registered key, this one included from now on.
        serving = await model_keys.register_serving(connection, queries.model_key)
    if not serving:  # retired while the model loaded
        _stay_retired(services)
        return
    try:  # search is served meanwhile; category, colour and price filters use these once they exist
        async with services.pool.acquire() as connection:
            await queries.graphs.ensure(connection)
    except (OSError, asyncpg.PostgresError):
        log.exception("could not build the per-value vector indexes; filtered search uses the main one")
    if services.settings.worker.inline:
        await run_worker(services, stop, recorder)


def _stay_retired(services: Services) -> None:
    services.readiness.queries = None
    services.readiness.model_retired = True
    log.error("this task's model key was retired; it stays not-ready", model_key=services.model_key)
