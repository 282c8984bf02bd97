"""OpenTelemetry tracing: spans exported over OTLP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

With no endpoint nothing is installed: no tracer provider, no instrumented libraries, no ASGI
middleware work; code that asks for a tracer gets OpenTelemetry's no-op one.

Once on, spans cover each request (ASGI), each PostgreSQL query (asyncpg), each Redis call,
each S3 call, the wait in the model's batching queue and the model's forward pass. Tracing is
process-wide, as OpenTelemetry's global tracer provider is; :func:`enable` and :func:`disable`
switch it (tests and the overhead benchmark use an in-memory or local exporter).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from webapp.config import TelemetrySettings

log = structlog.get_logger(__name__)

# The share of new traces recorded when OTEL_TRACES_SAMPLER_ARG is unset (see bench/telemetry_overhead.py).
DEFAULT_SAMPLE_RATIO = 1.0

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[..., Awaitable[None]]


class _Switch(SpanProcessor, Sampler):
    """The provider's one processor and sampler: drops everything while tracing is off."""

    def __init__(self) -> None:
        self.processor: SpanProcessor | None = None
        self.sampler: Sampler = ParentBased(TraceIdRatioBased(1.0))

    @property
    def on(self) -> bool:
        return self.processor is not None

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        if self.processor is None:
            return SamplingResult(Decision.DROP)
        return self.sampler.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)

    def get_description(self) -> str:
        return "PrethriftSwitch"

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        processor = self.processor
        if processor is not None:
            processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        processor = self.processor
        if processor is not None:
            processor.on_end(span)

    def shutdown(self) -> None:
        if self.processor is not None:
            self.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self.processor.force_flush(timeout_millis) if self.processor is not None else True


_switch = _Switch()
_provider: TracerProvider | None = None


def active() -> bool:
    """Whether spans are being recorded and exported."""
    return _switch.on


def _install_provider(service_name: str) -> None:
    global _provider
    if _provider is not None:
        return
    # OTEL_RESOURCE_ATTRIBUTES (deployment.environment=<stack>, ...) is merged in by Resource.create.
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}), sampler=_switch)
    provider.add_span_processor(_switch)
    trace.set_tracer_provider(provider)
    if trace.get_tracer_provider() is not provider:
        log.warning("another OpenTelemetry tracer provider was installed first; Prethrift spans go there")
    _provider = provider


def _instrumentors() -> list[Any]:
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    return [AsyncPGInstrumentor(), RedisInstrumentor()]  # type: ignore[no-untyped-call]


def enable(
    exporter: SpanExporter, *, service_name: str = "prethrift", batch: bool = True, sample_ratio: float = 1.0
) -> None:
    """Record spans and send them to ``exporter`` (batched in the background unless ``batch`` is False).

    ``sample_ratio`` of new traces are recorded; a request that arrives with a sampled
    ``traceparent`` is always recorded, so traces started upstream stay whole.
    """
    disable()
    _install_provider(service_name)
    _switch.sampler = ParentBased(TraceIdRatioBased(sample_ratio))
    _switch.processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
    for instrumentor in _instrumentors():
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def disable() -> None:
    """Stop recording: flush and close the exporter and unwrap the instrumented libraries."""
    processor, _switch.processor = _switch.processor, None
    if processor is not None:
        processor.shutdown()
    for instrumentor in _instrumentors():
        if instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.uninstrument()


def configure(settings: TelemetrySettings) -> bool:
    """Turn OTLP export on when an endpoint is configured (once per process); True if tracing is on."""
    if settings.otlp_endpoint and not active():
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
        ratio = sample_ratio_from_env()
        enable(OTLPSpanExporter(endpoint=endpoint), service_name=settings.service_name, sample_ratio=ratio)
        log.info("tracing on", otlp_endpoint=settings.otlp_endpoint, sample_ratio=ratio)
    return active()


def sample_ratio_from_env() -> float:
    """OpenTelemetry's ``OTEL_TRACES_SAMPLER_ARG`` (0..1), else :data:`DEFAULT_SAMPLE_RATIO`."""
    raw = os.environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    try:
        ratio = float(raw) if raw else DEFAULT_SAMPLE_RATIO
    except ValueError:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be a number from 0 to 1, not {raw!r}") from None
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"OTEL_TRACES_SAMPLER_ARG must be from 0 to 1, not {ratio}")
    return ratio


def tracer(name: str) -> trace.Tracer:
    """A tracer for manual spans; a no-op one until tracing is enabled."""
    return trace.get_tracer(name)


class TracingMiddleware:
    """ASGI middleware: one server span per request while tracing is on; steps aside otherwise.

    Leaner than opentelemetry-instrumentation-asgi, whose header and URL attribute extraction,
    per-message spans and own duration metrics cost a large share of a cache hit's time
    (bench/README.md, telemetry_overhead). This keeps what traces need: the caller's context from
    ``traceparent``, a SERVER span named by route (see :func:`name_request_span`), the status.
    """

    def __init__(
        self,
        app: ASGIApp,
        excluded_paths: frozenset[str] = frozenset({"/healthz", "/readyz", "/startedz", "/metrics"}),
    ) -> None:
        self.app = app
        self.excluded_paths = excluded_paths
        self._tracer = tracer(__name__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if not _switch.on or kind not in ("http", "websocket") or scope["path"] in self.excluded_paths:
            await self.app(scope, receive, send)
            return
        carrier = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope.get("headers", ())}
        method = scope.get("method", "WEBSOCKET")
        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", ""),
        }
        with self._tracer.start_as_current_span(
            f"{method} {scope['path']}",
            context=propagate.extract(carrier),
            kind=SpanKind.SERVER,
            attributes=attributes,
        ) as span:

            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(StatusCode.ERROR)
                await send(message)

            await self.app(scope, receive, traced_send)


def name_request_span(method: str, route: str) -> None:
    """Name the current request's span by its route template (``GET /api/items/<raw_id>``)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)


def current_ids() -> tuple[str, str] | None:
    """The current trace and span ids as hex, or None outside a recorded span."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")
