"""Tracing, logs and the metrics store, driven by real requests through the app."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import structlog
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from quart import Quart
from quart.testing import QuartClient

from tests.webapp.conftest import photo, run_worker_until_idle, upload
from webapp.config import TelemetrySettings
from webapp.observability import tracing
from webapp.observability.metrics_store import MetricsBatch, MetricsRecorder, MetricsWriter, prune, write_batch
from webapp.observability.telemetry import configure_logging


@pytest.fixture(name="spans")
def _spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.enable(exporter, batch=False)
    try:
        yield exporter
    finally:
        tracing.disable()


def _descends(span: ReadableSpan, ancestor: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    while span.parent is not None:
        if span.parent.span_id == ancestor.context.span_id:
            return True
        parent = by_id.get(span.parent.span_id)
        if parent is None:
            return False
        span = parent
    return False


async def test_one_search_is_one_trace_request_cache_model_database(
    client: QuartClient, spans: InMemorySpanExporter
) -> None:
    query = {"q": "green corduroy trousers", "mode": "semantic"}
    response = await client.get("/api/search", query_string=query)
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    requests = [s for s in finished if s.kind is SpanKind.SERVER]
    assert [s.name for s in requests] == ["GET /api/search"]
    request = requests[0]
    trace = [s for s in finished if s.context.trace_id == request.context.trace_id]
    by_id = {s.context.span_id: s for s in trace}
    cache = [s for s in trace if (s.attributes or {}).get("db.system") == "redis"]
    model = [s for s in trace if s.name.startswith("embed.")]
    database = [s for s in trace if (s.attributes or {}).get("db.system") == "postgresql"]
    assert cache and database and {s.name for s in model} == {"embed.queue_wait", "embed.forward"}
    assert all(_descends(s, request, by_id) for s in cache + model + database)
    # In time: the caches are asked first, the model embeds the query, the index is searched last.
    assert min(s.start_time or 0 for s in cache) < min(s.start_time or 0 for s in model)
    forward = next(s for s in model if s.name == "embed.forward")
    assert max(s.start_time or 0 for s in database) >= (forward.end_time or 0)
    assert request.attributes is not None and request.attributes["http.route"] == "/api/search"


async def test_logs_carry_the_trace_id_and_requests_their_id(
    client: QuartClient, spans: InMemorySpanExporter
) -> None:
    output = io.StringIO()
    with contextlib.redirect_stderr(output):
        configure_logging("INFO", json_logs=True)  # the production configuration, writing to `output`
    try:
        with tracing.tracer("test").start_as_current_span("work") as span:
            structlog.get_logger("test").info("inside a span")
    finally:
        structlog.reset_defaults()
    line = json.loads(output.getvalue().strip().splitlines()[-1])
    assert line["event"] == "inside a span"
    assert line["trace_id"] == format(span.get_span_context().trace_id, "032x")

    given = await client.get("/healthz", headers={"X-Request-ID": "lb-7f3a"})
    assert given.headers["X-Request-ID"] == "lb-7f3a"
    forged = "not ok; <script>" * 8
    made_up = (await client.get("/healthz", headers={"X-Request-ID": forged})).headers["X-Request-ID"]
    assert made_up != forged and len(made_up) == 32


async def test_tracing_is_off_without_an_endpoint(client: QuartClient) -> None:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    assert tracing.configure(TelemetrySettings()) is False
    assert not tracing.active()
    assert not AsyncPGInstrumentor().is_instrumented_by_opentelemetry  # type: ignore[no-untyped-call]
    assert (await client.get("/api/search", query_string={"q": "scarf"})).status_code == 200
    assert tracing.current_ids() is None


async def test_metrics_store_counts_real_traffic(
    app: Quart, client: QuartClient, auth: dict[str, str], database_url: str
) -> None:
    writer: MetricsWriter = app.extensions["metrics_writer"]
    recorder = writer.recorder
    for seed in range(3):
        assert (await upload(client, photo(seed), auth, title=f"Item {seed}")).status_code == 202
    await run_worker_until_idle(app, recorder)
    for q in ("red dress", "red dress", "blue coat"):
        assert (await client.get("/api/search", query_string={"q": q})).status_code == 200
    assert (await client.get("/api/search", query_string={"q": "x", "limit": 0})).status_code == 422
    assert (await client.get("/healthz")).status_code == 200
    assert await writer.flush() > 0

    connection = await asyncpg.connect(database_url)
    try:
        routes = {r["route"]: r for r in await connection.fetch("SELECT * FROM metrics_requests")}
        cache = {r["cache"]: r for r in await connection.fetch("SELECT * FROM metrics_cache")}
        ingest = await connection.fetchrow(
            "SELECT sum(embedded) AS embedded, max(queue_depth) AS depth FROM metrics_ingest"
        )
    finally:
        await connection.close()
    search = routes["GET /api/search"]
    assert (search["requests"], search["rejected"], search["errors"]) == (4, 1, 0)
    assert sum(search["buckets"]) == 4 and search["max_ms"] > 0
    assert routes["POST /api/items"]["requests"] == 3
    assert not any(route.endswith("/healthz") for route in routes)  # probes are not traffic
    assert cache["result"]["hits"] == 1 and cache["result"]["misses"] == 2
    assert ingest is not None and ingest["embedded"] == 3 and ingest["depth"] == 3


async def test_flush_twice_in_a_minute_adds_up_and_old_rows_are_pruned(database_url: str) -> None:
    now = datetime.now(UTC).timestamp()
    recorder = MetricsRecorder(clock=lambda: now)
    connection = await asyncpg.connect(database_url)
    try:
        for ms in (3.0, 40.0):
            recorder.request("GET /api/search", 200, ms / 1000)
            recorder.cache_lookup("embedding", hit=ms < 10)
            await write_batch(connection, recorder.take(), "replica-a")
        row = await connection.fetchrow("SELECT requests, max_ms, buckets FROM metrics_requests")
        assert row is not None and row["requests"] == 2 and row["max_ms"] == 40.0 and sum(row["buckets"]) == 2
        old = MetricsRecorder(clock=lambda: now - 20 * 86400)
        old.request("GET /api/search", 200, 0.01)
        old.ingest(embedded=5)
        await write_batch(connection, old.take(), "replica-a")
        assert await prune(connection, timedelta(days=14)) == 2
        assert await connection.fetchval("SELECT count(*) FROM metrics_requests") == 1
    finally:
        await connection.close()


async def test_a_failed_flush_keeps_the_counts_for_the_next(database_url: str) -> None:
    from webapp.observability.metrics_store import MetricsSettings

    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=1)
    recorder = MetricsRecorder()
    writer = MetricsWriter(pool, recorder, MetricsSettings(replica="r1"))
    recorder.request("GET /api/search", 200, 0.005)
    async with pool.acquire() as connection:
        await connection.execute("ALTER TABLE metrics_requests RENAME TO metrics_requests_away")
    assert await writer.flush() == 0
    async with pool.acquire() as connection:
        await connection.execute("ALTER TABLE metrics_requests_away RENAME TO metrics_requests")
    assert await writer.flush() == 1
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT sum(requests) FROM metrics_requests") == 1
    await pool.close()
    assert not MetricsBatch()
