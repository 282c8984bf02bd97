"""Logging set-up and the service's Prometheus counters (scraped at /metrics)."""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import Counter, Gauge, Histogram

CACHE_REQUESTS = Counter(
    "prethrift_cache_requests_total", "Cache look-ups by cache and outcome", ["cache", "outcome"]
)
CACHE_ERRORS = Counter(
    "prethrift_cache_errors_total", "Cache operations that failed (Redis down or slow)", ["op"]
)
EMBEDDINGS = Counter("prethrift_embeddings_total", "Item images embedded by the worker")
EMBEDDING_FAILURES = Counter("prethrift_embedding_failures_total", "Embedding attempts that failed", ["final"])
QUEUE_DEPTH = Gauge("prethrift_embedding_queue_depth", "Embedding jobs waiting")
REQUEST_LATENCY = Histogram(
    "prethrift_request_seconds",
    "Request latency by route",
    ["route", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


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
