"""Observability: Prometheus metrics, OpenTelemetry tracing, Sentry, and the metrics store the console reads."""
