"""Metrics, traces and logs: the Prometheus collector (prometheus_client's own registry), OpenTelemetry
(the SDK's in-memory readers and exporters), DEBUG lines and once-per-kind warnings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import fakeredis
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry, generate_latest

from valkey_rag_cache import AnswerCache, telemetry
from valkey_rag_cache.metrics import ProcessMetrics
from valkey_rag_cache.otel import OpenTelemetryObserver
from valkey_rag_cache.prometheus import ValkeyRagCacheCollector

PROMPT = "What is the refund window for order 4711?"


@pytest.fixture
def observer() -> Iterator[Any]:
    added: list[Any] = []

    def add(obs: Any) -> Any:
        telemetry.add_observer(obs)
        added.append(obs)
        return obs

    yield add
    for obs in added:
        telemetry.remove_observer(obs)


def exercise(cache: AnswerCache, raw: Any, unused_port: int) -> None:
    """One of each outcome: miss, stored, hit, stale, bad, refused, uncachable, and a backend outage."""
    key = cache.key("qa", PROMPT)
    assert cache.lookup(key) is None  # miss
    assert cache.store(key, "30 days.", ["kb/refunds.md", "kb/orders.md"])  # stored
    assert cache.lookup(key).value == "30 days."  # hit, 2 sources
    cache.invalidate_namespace("support")
    assert cache.lookup(key) is None  # stale
    raw.set(cache.schema.entry(key), b"garbage")
    assert cache.lookup(key) is None  # bad
    pending = cache.key("qa", "another question")
    assert cache.lookup(pending) is None  # miss
    assert cache.invalidate_source("kb/refunds.md") == 0
    assert cache.store(pending, "late answer", ["kb/refunds.md"]) is False  # refused
    assert cache.store(cache.key("qa", 3), {"x": object()}) is False  # uncachable
    down = AnswerCache(f"valkey://127.0.0.1:{unused_port}", namespace="support")
    assert down.lookup(key) is None  # error
    assert down.store(key, "x") is False  # dropped


@pytest.mark.fake
def test_prometheus_collector_counts_every_outcome(observer: Any, unused_port: int) -> None:
    server = fakeredis.FakeServer()
    cache = AnswerCache(client=fakeredis.FakeValkey(server=server), namespace="support")
    metrics = observer(ProcessMetrics())
    registry = CollectorRegistry()
    registry.register(ValkeyRagCacheCollector(metrics))
    exercise(cache, fakeredis.FakeValkey(server=server), unused_port)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    for result, n in (("hit", 1), ("miss", 2), ("stale", 1), ("bad", 1), ("error", 1)):
        assert value("valkey_rag_cache_lookups_total", namespace="support", result=result) == n, result
    assert value("valkey_rag_cache_writes_total", namespace="support") == 1
    assert value("valkey_rag_cache_refused_writes_total", namespace="support") == 1
    assert value("valkey_rag_cache_dropped_writes_total", namespace="support", reason="uncachable") == 1
    assert value("valkey_rag_cache_dropped_writes_total", namespace="support", reason="backend") == 1
    assert value("valkey_rag_cache_invalidations_total", kind="namespace") == 1
    assert value("valkey_rag_cache_invalidations_total", kind="source") == 1
    assert value("valkey_rag_cache_backend_errors_total", operation="lookup") == 1
    # The write came within the back-off after the failed lookup: skipped (dropped), not another error.
    assert value("valkey_rag_cache_backend_errors_total", operation="write") is None
    assert value("valkey_rag_cache_lookup_duration_seconds_count", namespace="support") == 6
    assert value("valkey_rag_cache_lookup_duration_seconds_bucket", namespace="support", le="+Inf") == 6
    assert value("valkey_rag_cache_lookup_duration_seconds_sum", namespace="support") > 0
    text = generate_latest(registry).decode()
    assert "# TYPE valkey_rag_cache_lookups_total counter" in text
    assert PROMPT not in text and "refunds" not in text  # labels are namespaces and outcomes only


@pytest.mark.fake
def test_namespace_labels_are_bounded() -> None:
    metrics = ProcessMetrics(max_namespaces=2)
    for ns in ("a", "b", "c", "d", "a"):
        metrics.on_lookup(ns, "hit", 0, 1000, 0)
    assert metrics.snapshot()["lookups"] == {("a", "hit"): 2, ("b", "hit"): 1, ("other", "hit"): 2}


@pytest.mark.fake
def test_opentelemetry_metrics_and_a_span_per_lookup(observer: Any, unused_port: int) -> None:
    reader = InMemoryMetricReader()
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    observer(OpenTelemetryObserver(MeterProvider(metric_readers=[reader]), tracer_provider))
    server = fakeredis.FakeServer()
    cache = AnswerCache(client=fakeredis.FakeValkey(server=server), namespace="support")
    parent = tracer_provider.get_tracer("app")
    with parent.start_as_current_span("llm call") as outer:
        exercise(cache, fakeredis.FakeValkey(server=server), unused_port)

    lookups = [s for s in spans.get_finished_spans() if s.name == "valkey_rag_cache.lookup"]
    assert [s.attributes["valkey_rag_cache.result"] for s in lookups] == [
        "miss",
        "hit",
        "stale",
        "bad",
        "miss",
        "error",
    ]
    hit = lookups[1]
    assert hit.attributes["valkey_rag_cache.hit"] is True
    assert hit.attributes["valkey_rag_cache.sources"] == 2
    assert hit.attributes["valkey_rag_cache.namespace"] == "support"
    assert hit.parent.span_id == outer.get_span_context().span_id
    assert hit.end_time >= hit.start_time
    writes = [
        s.attributes["valkey_rag_cache.result"]
        for s in spans.get_finished_spans()
        if s.name == "valkey_rag_cache.write"
    ]
    assert writes == ["stored", "refused", "uncachable", "dropped"]
    for span in spans.get_finished_spans():
        assert not any(PROMPT in str(v) or "refunds" in str(v) for v in span.attributes.values())

    points: dict[str, list[Any]] = {}
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                points[m.name] = list(m.data.data_points)
    by_result = {p.attributes["valkey_rag_cache.result"]: p.value for p in points["valkey_rag_cache.lookups"]}
    assert by_result == {"hit": 1, "miss": 2, "stale": 1, "bad": 1, "error": 1}
    assert [p.value for p in points["valkey_rag_cache.writes"]] == [1]
    assert [p.value for p in points["valkey_rag_cache.refused_writes"]] == [1]
    assert sum(p.count for p in points["valkey_rag_cache.lookup.duration"]) == 6
    kinds = {p.attributes["valkey_rag_cache.kind"]: p.value for p in points["valkey_rag_cache.invalidations"]}
    assert kinds == {"namespace": 1, "source": 1}


@pytest.mark.fake
def test_debug_lines_per_lookup_and_write_hold_no_prompt_or_secret(caplog: pytest.LogCaptureFixture) -> None:
    cache = AnswerCache(client=fakeredis.FakeValkey(server=fakeredis.FakeServer()), namespace="support")
    key = cache.key("qa", PROMPT)
    with caplog.at_level(logging.DEBUG, logger="valkey_rag_cache"):
        cache.lookup(key)
        cache.store(key, "30 days (secret: hunter2)", ["kb/refunds.md"])
        cache.lookup(key)
    lines = [r.getMessage() for r in caplog.records if r.name == "valkey_rag_cache"]
    assert [line.split()[1:3] for line in lines] == [
        ["lookup", "miss"],
        ["write", "stored"],
        ["lookup", "hit"],
    ]
    assert all(f"namespace=support key={key.digest} " in line and line.endswith("us") for line in lines)
    assert "sources=1" in lines[1] and "sources=1" in lines[2]
    assert not [line for line in lines if PROMPT in line or "hunter2" in line or "refunds" in line]


@pytest.mark.fake
def test_uncachable_values_warn_once_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    class Answer:
        pass

    class Other:
        pass

    cache = AnswerCache(client=fakeredis.FakeValkey(server=fakeredis.FakeServer()), namespace="support")
    with caplog.at_level(logging.WARNING, logger="valkey_rag_cache"):
        for i in range(5):
            assert cache.store(cache.key("qa", i), {"answer": Answer()}) is False
        assert cache.store(cache.key("qa", "o"), Other()) is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "Answer" in warnings[0] and "Other" in warnings[1]


@pytest.mark.fake
def test_nothing_is_timed_or_reported_without_an_observer_or_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    # The hit path stays as it was: no clock reads, no report calls, unless someone listens.
    assert telemetry.observers() == () and not telemetry.observed()

    def boom(*args: object) -> None:
        raise AssertionError("reported without a listener")

    monkeypatch.setattr(telemetry, "lookup", boom)
    monkeypatch.setattr(telemetry, "write", boom)
    cache = AnswerCache(client=fakeredis.FakeValkey(server=fakeredis.FakeServer()), namespace="support")
    key = cache.key("qa", 1)
    assert cache.lookup(key) is None
    assert cache.store(key, "a")
    assert cache.lookup(key) is not None


@pytest.mark.fake
def test_a_failing_observer_never_breaks_a_lookup(observer: Any) -> None:
    class Broken:
        def on_lookup(self, *args: object) -> None:
            raise RuntimeError("observer bug")

        on_write = on_invalidation = on_backend_error = on_lookup

    observer(Broken())
    cache = AnswerCache(client=fakeredis.FakeValkey(server=fakeredis.FakeServer()), namespace="support")
    key = cache.key("qa", 1)
    assert cache.lookup(key) is None
    assert cache.store(key, "a")
    assert cache.lookup(key).value == "a"
