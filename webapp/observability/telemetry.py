"""Logging set-up, Sentry, and the service's Prometheus counters (scraped at /metrics)."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from prometheus_client import Counter, Gauge, Histogram

from webapp.config import Settings
from webapp.observability.tracing import current_ids

CACHE_REQUESTS = Counter(
    "prethrift_cache_requests_total", "Cache look-ups by cache and outcome", ["cache", "outcome"]
)
CACHE_ERRORS = Counter(
    "prethrift_cache_errors_total", "Cache operations that failed (Redis down or slow)", ["op"]
)
EMBEDDINGS = Counter("prethrift_embeddings_total", "Item images embedded by the worker")
EMBEDDING_FAILURES = Counter("prethrift_embedding_failures_total", "Embedding attempts that failed", ["final"])
QUEUE_DEPTH = Gauge("prethrift_embedding_queue_depth", "Embedding jobs waiting")
SEARCH_LOG_DROPPED = Counter(
    "prethrift_search_log_dropped_total",
    "Searches left out of the search log: queue full (writer behind) or a failed write",
    ["reason"],
)
SEARCH_LOG_WRITTEN = Counter("prethrift_search_log_written_total", "Searches written to the search log")
REQUEST_LATENCY = Histogram(
    "prethrift_request_seconds",
    "Request latency by route",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


def add_trace_ids(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Put the current trace and span ids on a log line, so logs and traces join up."""
    ids = current_ids()
    if ids is not None:
        event["trace_id"], event["span_id"] = ids
    return event


def send_errors_to_sentry(_: Any, method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Report logged exceptions to Sentry (the API's catch-all handler logs them, never re-raises)."""
    if event.get("exc_info") and method in ("error", "exception", "critical"):
        import sentry_sdk

        if sentry_sdk.is_initialized():
            exc_info = event["exc_info"]
            sentry_sdk.capture_exception(None if isinstance(exc_info, bool) else exc_info)
    return event


def init_sentry(settings: Settings) -> bool:
    """Start Sentry when SENTRY_DSN is set; personal data (IPs, cookies, headers, bodies) is never sent."""
    dsn = settings.telemetry.sentry_dsn
    if dsn is None:
        return False
    import sentry_sdk
    from sentry_sdk.integrations.quart import QuartIntegration

    sentry_sdk.init(
        dsn=dsn.get_secret_value(),
        environment=settings.environment.value,
        integrations=[QuartIntegration()],
        send_default_pii=False,
        max_request_body_size="never",
        traces_sample_rate=0.0,  # traces go to OpenTelemetry
    )
    return True


def configure_logging(level: str = "INFO", *, json_logs: bool = True) -> None:
    """Structured logs to stderr: JSON in deployments, readable text on a terminal."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            add_trace_ids,
            send_errors_to_sentry,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=numeric, stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
