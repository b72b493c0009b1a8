"""Prometheus metrics of this process's cache calls (``pip install 'valkey-rag-cache[prometheus]'``).

A custom collector reads `metrics.ProcessMetrics` at scrape time, so the cache's hot path only bumps a few
counters under a lock. Label values are namespaces (at most `metrics.MAX_NAMESPACES`, then ``other``) and
fixed outcome names: never documents, users or prompts.

Example (a worker that has no HTTP server of its own)::

    from prometheus_client import start_http_server
    from valkey_rag_cache.prometheus import install

    install()               # registers the collector with prometheus_client's default registry
    start_http_server(9464)  # or mount prometheus_client.make_wsgi_app() / make_asgi_app() in your app
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from . import telemetry
from .metrics import LATENCY_BUCKETS, ProcessMetrics, process_metrics

__all__ = ["ValkeyRagCacheCollector", "install"]

NAME = "valkey_rag_cache"


class ValkeyRagCacheCollector(Collector):
    """Exposes `ProcessMetrics` as Prometheus metrics:

    - ``valkey_rag_cache_lookups_total{namespace, result="hit|miss|stale|bad|error"}``
    - ``valkey_rag_cache_writes_total{namespace}``, ``valkey_rag_cache_refused_writes_total{namespace}``,
      ``valkey_rag_cache_dropped_writes_total{namespace, reason="backend|uncachable"}``
    - ``valkey_rag_cache_invalidations_total{kind="source|namespace|all|drop"}`` and
      ``valkey_rag_cache_invalidated_entries_total{kind}``
    - ``valkey_rag_cache_backend_errors_total{operation="lookup|write|admin"}``
    - ``valkey_rag_cache_lookup_duration_seconds{namespace}`` (a histogram)
    """

    def __init__(self, metrics: ProcessMetrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else process_metrics()

    def describe(self) -> list[Metric]:
        return []  # collected at scrape time only; the registry does not call collect() on register

    def collect(self) -> Iterator[Metric]:
        snap: dict[str, Any] = self.metrics.snapshot()
        lookups = CounterMetricFamily(
            f"{NAME}_lookups", "Cache lookups by namespace and outcome.", labels=["namespace", "result"]
        )
        for (ns, result), n in sorted(snap["lookups"].items()):
            lookups.add_metric([ns, result], n)
        yield lookups

        writes = CounterMetricFamily(f"{NAME}_writes", "Answers stored.", labels=["namespace"])
        refused = CounterMetricFamily(
            f"{NAME}_refused_writes",
            "Writes refused because an invalidation overtook the lookup they followed.",
            labels=["namespace"],
        )
        dropped = CounterMetricFamily(
            f"{NAME}_dropped_writes",
            "Writes not stored: the backend was unavailable, or the value cannot be stored as JSON.",
            labels=["namespace", "reason"],
        )
        for (ns, result), n in sorted(snap["writes"].items()):
            if result == "stored":
                writes.add_metric([ns], n)
            elif result == "refused":
                refused.add_metric([ns], n)
            else:
                dropped.add_metric([ns, "backend" if result == "dropped" else result], n)
        yield from (writes, refused, dropped)

        invalidations = CounterMetricFamily(
            f"{NAME}_invalidations", "Invalidations this process ran, by kind.", labels=["kind"]
        )
        for kind, n in sorted(snap["invalidations"].items()):
            invalidations.add_metric([kind], n)
        yield invalidations
        entries = CounterMetricFamily(
            f"{NAME}_invalidated_entries",
            "Entries deleted by this process's source invalidations and drops.",
            labels=["kind"],
        )
        for kind, n in sorted(snap["invalidated_entries"].items()):
            entries.add_metric([kind], n)
        yield entries

        errors = CounterMetricFamily(
            f"{NAME}_backend_errors", "Calls that failed on the backend, by operation.", labels=["operation"]
        )
        for op, n in sorted(snap["backend_errors"].items()):
            errors.add_metric([op], n)
        yield errors

        latency = HistogramMetricFamily(
            f"{NAME}_lookup_duration_seconds",
            "Lookup latency, seen from the application.",
            labels=["namespace"],
        )
        for ns, (buckets, total) in sorted(snap["latency"].items()):
            cumulative, acc = [], 0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=True):
                acc += n
                cumulative.append((_bound(bound), acc))
            latency.add_metric([ns], cumulative, sum_value=total)
        yield latency


def _bound(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


_installed: dict[int, ValkeyRagCacheCollector] = {}


def install(registry: CollectorRegistry = REGISTRY) -> ValkeyRagCacheCollector:
    """Start counting this process's cache calls and register the collector (once per registry)."""
    collector = _installed.get(id(registry))
    if collector is None:
        collector = _installed[id(registry)] = ValkeyRagCacheCollector()
        registry.register(collector)
    telemetry.add_observer(collector.metrics)  # (again, if someone removed it)
    return collector
