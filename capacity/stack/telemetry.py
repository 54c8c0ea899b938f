"""OpenTelemetry in the embedded stand-ins: a real SDK tracer provider exporting OTLP/HTTP.

Each stand-in process calls `setup` once with its service name and the OTLP endpoint the
supervisor gave it (`--otlp-endpoint`; empty: no tracing, nothing instrumented, zero cost).
The sampler is `ParentBased(ALWAYS_OFF)`: a service records a span only when the incoming
`traceparent` says sampled, so the load generator's `trace_sample_rate` alone sets the share
(10% in development, 1% in production, as the stack description's collectors do), and traffic
without trace context (health checks, Temporal's own polling) costs no span. Batches go out
every 0.5 s so a run's last spans reach the receiver within a second of the load stopping.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased

EXPORT_DELAY_MS = 500
EXCLUDED_URLS_ENV = "OTEL_PYTHON_AIOHTTP_SERVER_EXCLUDED_URLS"
EXCLUDED_URLS = "/health$,server-health$,/admin/"
EXPORT_TIMEOUT_S = 2.0

_provider: TracerProvider | None = None


def setup(service: str, endpoint: str) -> TracerProvider | None:
    """Install this process's tracer provider (global, so instrumentations find it)."""
    global _provider
    if not endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    provider = TracerProvider(
        resource=Resource.create({"service.name": service}),
        sampler=ParentBased(ALWAYS_OFF),
    )
    exporter = OTLPSpanExporter(endpoint=endpoint, timeout=EXPORT_TIMEOUT_S)
    provider.add_span_processor(
        BatchSpanProcessor(
            exporter,
            schedule_delay_millis=EXPORT_DELAY_MS,
            max_queue_size=16384,
            max_export_batch_size=1024,
        )
    )
    trace.set_tracer_provider(provider)
    # Every aiohttp app of the process gets the server middleware, outermost (so a server
    # span includes the knobs' latency); health and admin endpoints are not traced.
    os.environ.setdefault(EXCLUDED_URLS_ENV, EXCLUDED_URLS)
    from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor

    AioHttpServerInstrumentor().instrument(tracer_provider=provider)
    # Between runs nobody listens: one line per failed batch is enough, not a traceback.
    logging.getLogger("opentelemetry.exporter.otlp.proto.http").setLevel(logging.ERROR)
    _provider = provider
    return provider


def provider() -> TracerProvider | None:
    """The provider `setup` installed, or None when this process does not trace."""
    return _provider


def shutdown() -> None:
    """Flush and stop the exporter (the workflow process exits without atexit handlers)."""
    if _provider is not None:
        _provider.shutdown()


def client_trace_configs() -> list[Any]:
    """trace_configs for an aiohttp ClientSession: CLIENT spans and `traceparent` injection."""
    if _provider is None:
        return []
    from opentelemetry.instrumentation.aiohttp_client import create_trace_config

    return [create_trace_config(tracer_provider=_provider)]


def instrument_asyncpg() -> None:
    """Database CLIENT spans for every asyncpg query (statement text, no parameter values)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=_provider)


def temporal_interceptors() -> list[Any]:
    """temporalio's OpenTelemetry interceptor (client, workflow and activity spans)."""
    if _provider is None:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(trace.get_tracer("temporalio", tracer_provider=_provider))]


def set_attribute(key: str, value: Any) -> None:
    """Set an attribute on the current span when it records (cheap no-op otherwise)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute(key, value)
