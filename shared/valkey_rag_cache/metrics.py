"""This process's cache counters, kept by an observer: what the Prometheus and OpenTelemetry exporters read.

Per process on purpose: each application replica exports what it did, and a dashboard sums them (the
counters every process shares live in Valkey and are read with ``stats()`` or ``valkey-rag-cache stats``).

Example:
    >>> m = ProcessMetrics()
    >>> m.on_lookup("support", "hit", 0, 250_000, 2)
    >>> m.snapshot()["lookups"]
    {('support', 'hit'): 1}
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Any

from . import telemetry

__all__ = ["LATENCY_BUCKETS", "ProcessMetrics", "process_metrics"]

# Seconds: a hit is a round trip (tens of microseconds to a few milliseconds); the cache's timeout is 0.5 s.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)

# Namespaces become label values: past this many distinct ones, the rest are counted under "other", so a
# namespace per user (a misuse) cannot blow up the metrics backend.
MAX_NAMESPACES = 200
OTHER = "other"


class ProcessMetrics:
    """Thread-safe counters and a lookup-latency histogram, per namespace; an `telemetry.Observer`."""

    def __init__(self, max_namespaces: int = MAX_NAMESPACES) -> None:
        self.max_namespaces = max_namespaces
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self.lookups: dict[tuple[str, str], int] = defaultdict(int)
        self.writes: dict[tuple[str, str], int] = defaultdict(int)
        self.invalidations: dict[str, int] = defaultdict(int)
        self.invalidated_entries: dict[str, int] = defaultdict(int)
        self.backend_errors: dict[str, int] = defaultdict(int)
        # namespace -> (bucket counts, one per LATENCY_BUCKETS plus +Inf, not cumulative), sum of seconds
        self.latency: dict[str, tuple[list[int], list[float]]] = {}

    def _label(self, namespace: str) -> str:
        if namespace in self._names:
            return namespace
        if len(self._names) < self.max_namespaces:
            self._names.add(namespace)
            return namespace
        return OTHER

    def on_lookup(self, namespace: str, result: str, start_ns: int, duration_ns: int, sources: int) -> None:
        seconds = duration_ns / 1e9
        with self._lock:
            ns = self._label(namespace)
            self.lookups[(ns, result)] += 1
            hist = self.latency.get(ns)
            if hist is None:
                hist = self.latency[ns] = ([0] * (len(LATENCY_BUCKETS) + 1), [0.0])
            hist[0][bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            hist[1][0] += seconds

    def on_write(self, namespace: str, result: str, start_ns: int, duration_ns: int, sources: int) -> None:
        with self._lock:
            self.writes[(self._label(namespace), result)] += 1

    def on_invalidation(self, kind: str, retired: int | None) -> None:
        with self._lock:
            self.invalidations[kind] += 1
            if retired:
                self.invalidated_entries[kind] += retired

    def on_backend_error(self, operation: str) -> None:
        with self._lock:
            self.backend_errors[operation] += 1

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of every counter (what exporters read at scrape or collection time)."""
        with self._lock:
            return {
                "lookups": dict(self.lookups),
                "writes": dict(self.writes),
                "invalidations": dict(self.invalidations),
                "invalidated_entries": dict(self.invalidated_entries),
                "backend_errors": dict(self.backend_errors),
                "latency": {ns: (list(b), s[0]) for ns, (b, s) in self.latency.items()},
            }


_default: ProcessMetrics | None = None
_default_lock = threading.Lock()


def process_metrics() -> ProcessMetrics:
    """The process-wide `ProcessMetrics`, installed as an observer on first use."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ProcessMetrics()
            telemetry.add_observer(_default)
        return _default
