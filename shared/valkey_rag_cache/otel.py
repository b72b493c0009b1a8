"""OpenTelemetry metrics and spans of this process's cache calls (``pip install 'valkey-rag-cache[otel]'``).

Only the API is needed here; your application configures the SDK and exporters. With it installed:
the same counters as the Prometheus collector, as OTel instruments, and one span per lookup and per write
(``valkey_rag_cache.lookup`` / ``valkey_rag_cache.write``, children of whatever span is current, such as
your LLM call) carrying the outcome, the namespace and the number of sources; never a prompt or a value.

Example::

    from valkey_rag_cache.otel import install

    install()  # uses the global MeterProvider and TracerProvider your app set up
"""

from __future__ import annotations

import time
from importlib.metadata import PackageNotFoundError, version

from opentelemetry import metrics, trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import TracerProvider

from . import telemetry

__all__ = ["OpenTelemetryObserver", "install"]

SCOPE = "valkey_rag_cache"


def _version() -> str | None:
    try:
        return version("valkey-rag-cache")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return None


class OpenTelemetryObserver:
    """A `telemetry.Observer` that records OTel counters, a latency histogram and spans."""

    def __init__(
        self,
        meter_provider: MeterProvider | None = None,
        tracer_provider: TracerProvider | None = None,
        spans: bool = True,
    ) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(SCOPE, _version())
        self.tracer = (tracer_provider or trace.get_tracer_provider()).get_tracer(SCOPE, _version())
        self.spans = spans
        self.lookups = meter.create_counter(
            "valkey_rag_cache.lookups", unit="{lookup}", description="Cache lookups by namespace and outcome."
        )
        self.writes = meter.create_counter(
            "valkey_rag_cache.writes", unit="{write}", description="Answers stored."
        )
        self.refused_writes = meter.create_counter(
            "valkey_rag_cache.refused_writes",
            unit="{write}",
            description="Writes refused because an invalidation overtook the lookup they followed.",
        )
        self.dropped_writes = meter.create_counter(
            "valkey_rag_cache.dropped_writes",
            unit="{write}",
            description="Writes not stored: backend unavailable, or a value JSON cannot hold.",
        )
        self.invalidations = meter.create_counter(
            "valkey_rag_cache.invalidations", unit="{invalidation}", description="Invalidations by kind."
        )
        self.invalidated_entries = meter.create_counter(
            "valkey_rag_cache.invalidated_entries", unit="{entry}", description="Entries deleted by kind."
        )
        self.backend_errors = meter.create_counter(
            "valkey_rag_cache.backend_errors", unit="{error}", description="Backend failures by operation."
        )
        self.lookup_duration = meter.create_histogram(
            "valkey_rag_cache.lookup.duration", unit="s", description="Lookup latency."
        )

    def on_lookup(self, namespace: str, result: str, start_ns: int, duration_ns: int, sources: int) -> None:
        attrs = {"valkey_rag_cache.namespace": namespace, "valkey_rag_cache.result": result}
        self.lookups.add(1, attrs)
        self.lookup_duration.record(duration_ns / 1e9, {"valkey_rag_cache.namespace": namespace})
        if self.spans:
            self._span("valkey_rag_cache.lookup", attrs, start_ns, duration_ns, sources, hit=result == "hit")

    def on_write(self, namespace: str, result: str, start_ns: int, duration_ns: int, sources: int) -> None:
        attrs = {"valkey_rag_cache.namespace": namespace}
        if result == "stored":
            self.writes.add(1, attrs)
        elif result == "refused":
            self.refused_writes.add(1, attrs)
        else:
            reason = "backend" if result == "dropped" else result
            self.dropped_writes.add(1, {**attrs, "valkey_rag_cache.reason": reason})
        if self.spans:
            span_attrs = {**attrs, "valkey_rag_cache.result": result}
            self._span("valkey_rag_cache.write", span_attrs, start_ns, duration_ns, sources)

    def on_invalidation(self, kind: str, retired: int | None) -> None:
        self.invalidations.add(1, {"valkey_rag_cache.kind": kind})
        if retired:
            self.invalidated_entries.add(retired, {"valkey_rag_cache.kind": kind})

    def on_backend_error(self, operation: str) -> None:
        self.backend_errors.add(1, {"valkey_rag_cache.operation": operation})

    def _span(
        self,
        name: str,
        attrs: dict[str, str],
        start_ns: int,
        duration_ns: int,
        sources: int,
        hit: bool | None = None,
    ) -> None:
        # The observer hears of a call once it is done: the span gets its real start and end, on the wall
        # clock OTel uses (the duration comes from the monotonic clock).
        end = time.time_ns()
        span = self.tracer.start_span(name, start_time=end - duration_ns, attributes=attrs)
        span.set_attribute("valkey_rag_cache.sources", sources)
        if hit is not None:
            span.set_attribute("valkey_rag_cache.hit", hit)
        span.end(end_time=end)


def install(
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
    spans: bool = True,
) -> OpenTelemetryObserver:
    """Record every cache call of this process with OpenTelemetry (global providers by default)."""
    observer = OpenTelemetryObserver(meter_provider, tracer_provider, spans)
    telemetry.add_observer(observer)
    return observer
